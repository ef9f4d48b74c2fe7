"""Pipeline pieces that replay's end-to-end tests do not pin down: crops, ground-truth tallies."""
import numpy as np
import pytest

from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.offline.pipeline import (
    CROP_SIZE,
    GroundTruthTally,
    _crop,
    load_parameters,
)
from importance_sampler_ros.params import ParameterError
from importance_sampler_ros.tracking.relabel import RelabelEvent, RelabelledObservation

IMAGE = np.arange(10 * 20 * 3, dtype=np.uint8).reshape(10, 20, 3)


@pytest.mark.parametrize('box', [[30, 2, 40, 8], [-9, -9, -2, -2], [np.nan, 1, 2, 3]])
def test_crop_of_a_box_outside_the_image_is_none(box):
    assert _crop(IMAGE, np.array(box, np.float32)) is None


def test_crop_clips_to_the_image():
    crop = _crop(IMAGE, np.array([-5, -5, 3, 3], np.float32))
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3)
    assert (crop[0, 0] == IMAGE[0, 0]).all()


def frame(stamp, boxes, classes, distances=()):
    return FrameDetections(stamp_ns=stamp, boxes=np.array(boxes, np.float32).reshape(-1, 4),
                           class_ids=classes, class_names=['x'] * len(classes),
                           scores=[1.0] * len(classes), distances=distances)


def test_ground_truth_errors_and_relabel_accuracy():
    tally = GroundTruthTally()
    truth = frame(1, [[0, 0, 10, 10], [50, 50, 60, 60], [80, 0, 90, 10]], [2, 1, 1],
                  [70.0, 70.0, 10.0])
    # box 0 matches truth 0 with the wrong class, box 1 matches truth 1, truth 2 missed,
    # box 2 is a false positive
    detections = frame(1, [[0, 0, 10, 11], [50, 50, 60, 60], [200, 0, 210, 10]], [1, 1, 3])
    errors, visible, labelled, matched = tally.add_frame(detections, truth)
    assert (errors, visible, matched) == (3, 2, 2)  # 1 wrong class + 1 miss + 1 false positive
    assert labelled == 0  # every box is 10 px, under the labelling height
    summary = tally.summary()
    assert summary['far_accuracy_before_relabel'] == pytest.approx(0.5)
    tally.add_relabel(RelabelEvent(
        stamp_ns=2, frame_id='', track_id=4, old_class_id=1, old_class_name='car',
        new_class_id=2, new_class_name='van', confidence=0.9, reissued=False,
        observations=(RelabelledObservation(1, (0, 0, 10, 11), 0),)))
    summary = tally.summary()
    assert summary['far_accuracy_after_relabel'] == pytest.approx(1.0)
    assert summary['far_errors_corrected_ratio'] == pytest.approx(1.0)


def test_a_missing_parameter_file_is_refused_as_up_refuses_it(tmp_path, monkeypatch):
    from importance_sampler_ros.offline import pipeline

    with pytest.raises(ParameterError, match=r'parameter file .*typo\.yaml does not exist'):
        load_parameters(tmp_path / 'typo.yaml')
    # no --params: the file the launcher takes (share_path), and it must exist too
    from importance_sampler_ros.nodes.launcher import default_params_file

    assert default_params_file() == pipeline.DEFAULT_PARAMS_FILE
    monkeypatch.setattr(pipeline, 'DEFAULT_PARAMS_FILE', tmp_path / 'gone.yaml')
    with pytest.raises(ParameterError, match=r'gone\.yaml does not exist'):
        load_parameters(None)


def test_parameters_file_is_validated(tmp_path):
    bad = tmp_path / 'p.yaml'
    bad.write_text('recorder_node:\n  ros__parameters:\n    keep_ratio: 3.0\n')
    with pytest.raises(ParameterError, match='keep_ratio'):
        load_parameters(bad)
    values, ignored = load_parameters(None)  # the shipped config/importance_sampler.yaml
    assert values['recorder_node']['keep_ratio'] > 0
    assert 'tracker_node.tracks_topic' in ignored  # node-only keys are named, not used
