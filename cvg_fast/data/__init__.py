"""Video data: PyAV I/O primitives, a Dataset over folders of videos, the synthetic dataset.

Frames are uint8 (T, H, W, 3) numpy arrays inside `video_io`; `VideoFolder` items are
float32 (T, 3, H, W) tensors in [-1, 1] (a DataLoader batch is (N, T, 3, H, W)).
"""

from cvg_fast.data.layouts import DatasetListing, detect_layout
from cvg_fast.data.synthetic import synthetic_class_names, write_synthetic_dataset
from cvg_fast.data.video_folder import VideoFolder, scan_video_folder
from cvg_fast.data.video_io import (
    VIDEO_EXTENSIONS,
    VideoInfo,
    VideoWriter,
    probe_video,
    read_clip,
    read_frames,
    save_frame_grid_png,
    write_video,
)

__all__ = [
    "DatasetListing",
    "VIDEO_EXTENSIONS",
    "VideoFolder",
    "VideoInfo",
    "VideoWriter",
    "detect_layout",
    "probe_video",
    "read_clip",
    "read_frames",
    "save_frame_grid_png",
    "scan_video_folder",
    "synthetic_class_names",
    "write_synthetic_dataset",
    "write_video",
]
