"""One level's GAN training: losses, data-parallel steps, checkpoints, logging."""

from cvg_fast.training.trainer import LevelTrainer, TrainResult, train_level

__all__ = ["LevelTrainer", "TrainResult", "train_level"]
