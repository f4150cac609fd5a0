"""What every long job needs, in one place: progress lines and step timers, signals that stop a job cleanly, the
allocator's settings, and the choice of device. No package here imports dask, click or cv2."""
