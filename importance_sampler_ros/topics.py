"""Default topic names of the graph, in one place (each node's topic parameters default to these;
the recorded bag uses the output names as they are)."""

IMAGE = '/camera/image_raw'
GROUND_TRUTH = '/ground_truth/detections'
DETECTIONS = '/importance_sampler/detections'
TRACKS = '/importance_sampler/tracks'
TRACKED_DETECTIONS = '/importance_sampler/tracked_detections'
RELABELS = '/importance_sampler/relabels'
DECISIONS = '/importance_sampler/decisions'
DEBUG_IMAGE = '/importance_sampler/debug_image'
MARKERS = '/importance_sampler/markers'
FRAME_IMPORTANCE = '/importance_sampler/frame_importance'
KEEP_RATIO = '/importance_sampler/keep_ratio'
