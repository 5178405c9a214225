"""Video -> pose throughput: frames/s of signclip's converter, single process and with worker
processes, beside pose-format's own ``video_to_pose`` measured in the same run.

    python benchmarks/video.py [--video PATH] [--copies 4] [--workers 2]

Needs the video extra (``pip install "signclip[video]"``). Every row converts the same ``--copies``
copies of the video; the first conversion (graph start-up) is a warm-up outside the timings, except for
the worker row, whose wall time includes starting the worker processes.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "test_video.mp4"


def _cpu() -> float:
    """CPU seconds used so far by this process and its reaped worker processes."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _measure(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of fn()."""
    wall, cpu = time.perf_counter(), _cpu()
    fn()
    return time.perf_counter() - wall, _cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from pose_format.bin.pose_estimation import pose_video

    from signclip.pose.video import convert_video, convert_videos, video_to_pose

    frames_per_video = int(video_to_pose(args.video).body.data.shape[0])  # warm-up (graph start-up)
    total = frames_per_video * args.copies
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        videos_dir = tmp / "videos"
        videos_dir.mkdir()
        videos = []
        for i in range(args.copies):
            videos.append(videos_dir / f"copy{i}{args.video.suffix}")
            shutil.copy(args.video, videos[-1])
        rows = []

        def reference(video: Path, out: Path) -> None:
            with contextlib.redirect_stdout(io.StringIO()):  # it prints its progress
                pose_video(str(video), str(out), "mediapipe", {"model_complexity": 1}, progress=False)

        for label, fn in (("pose-format `video_to_pose` (1 process)", reference),
                          ("signclip `video_to_pose` (1 process)", convert_video)):
            out = tmp / label.split()[0]
            out.mkdir()
            rows.append((label, *_measure(lambda: [fn(v, out / f"{i}.pose") for i, v in enumerate(videos)])))
        summaries = []
        rows.append((f"signclip `signclip pose` ({args.workers} worker processes, incl. their start-up)",
                     *_measure(lambda: summaries.append(
                         convert_videos(videos_dir, tmp / "workers", workers=args.workers, progress=False)))))
        assert not summaries[0].failed and len(summaries[0].converted) == args.copies, str(summaries[0])
    # what each worker process pays before its first frame: a fresh interpreter importing signclip + mediapipe
    startup = _measure(lambda: subprocess.run(
        [sys.executable, "-c", "import signclip.pose.video, pose_format.utils.holistic"], check=True))

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"video: {args.video.name}, {frames_per_video} frames; {args.copies} copies = {total} frames; "
          f"{cores} CPU cores; load average {os.getloadavg()[0]:.1f} at the end")
    print()
    print("| converter | wall s | frames/s | CPU s | frames per CPU s |")
    print("|---|---:|---:|---:|---:|")
    for label, seconds, cpu in rows:
        print(f"| {label} | {seconds:.1f} | {total / seconds:.1f} | {cpu:.1f} | {total / cpu:.1f} |")
    print(f"| start-up of one worker process (imports, no frames) | {startup[0]:.1f} | | {startup[1]:.1f} | |")


if __name__ == "__main__":
    main()
