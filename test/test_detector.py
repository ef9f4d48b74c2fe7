"""Detector core: architectures, checkpoints, captured features, importances, aggregation."""
import copy

import numpy as np
import pytest
import torch

from importance_sampler_ros.detection.detections import FrameDetections, with_candidate_floor
from importance_sampler_ros.detection.detector import (
    DEFAULT_CLASS_NAMES,
    CheckpointError,
    Detector,
    DetectorConfig,
    DetectorError,
    build_model,
    default_checkpoint_path,
    forward_with_features,
    load_checkpoint,
    proposals_and_features,
    save_checkpoint,
    state_dict_megabytes,
)
from importance_sampler_ros.detection.importance import SCORERS, last_layer_gradient_norms

NUM_CLASSES = len(DEFAULT_CLASS_NAMES)
HEIGHT, WIDTH = 128, 384  # small frames keep the CPU time of these tests low


def random_model(seed: int = 0, score_threshold: float = 0.02):
    torch.manual_seed(seed)
    return build_model('isr_small', NUM_CLASSES, HEIGHT, WIDTH, score_threshold=score_threshold)


@pytest.fixture(scope='module')
def random_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp('ckpt') / 'random.pt'
    save_checkpoint(path, random_model(), architecture='isr_small', class_names=DEFAULT_CLASS_NAMES,
                    min_size=HEIGHT, max_size=WIDTH, extra={'note': 'random weights'})
    return path


def random_image(seed: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def autograd_last_layer_norms(model, features, labels, float64=True) -> torch.Tensor:
    """Per-detection gradient norm of CE at the model's own cls_score layer, by autograd.

    float64: on a float64 copy of the real layer, so that the reference itself does not suffer the
    float32 cancellation of p - 1 for confident detections; else on the layer itself.
    """
    layer = model.roi_heads.box_predictor.cls_score
    if float64:
        layer = copy.deepcopy(layer).double()
    features = features.detach().to(layer.weight.dtype)
    norms = []
    for h, label in zip(features, labels, strict=True):
        loss = torch.nn.functional.cross_entropy(layer(h[None]), label.view(1).long())
        weight_grad, bias_grad = torch.autograd.grad(loss, [layer.weight, layer.bias])
        norms.append(torch.linalg.vector_norm(torch.cat([weight_grad.flatten(), bias_grad])))
    return torch.stack(norms).double()


def check_closed_form_against_autograd(model, images) -> int:
    """Assert agreement for every detection; return how many labels were not the argmax."""
    with torch.no_grad():
        captured = forward_with_features(model, images)
    not_argmax = 0
    for c in captured:
        assert len(c.labels) > 0
        # h and logits belong to the detection: the layer maps h to the logits, whose softmax
        # at the detection's label is the detection's score.
        with torch.no_grad():
            recomputed = model.roi_heads.box_predictor.cls_score(c.features)
        torch.testing.assert_close(recomputed, c.logits, rtol=1e-5, atol=1e-5)
        probabilities = torch.softmax(c.logits, 1)
        torch.testing.assert_close(probabilities[torch.arange(len(c.labels)), c.labels], c.scores)
        closed = last_layer_gradient_norms(c.features, c.logits, c.labels).double()
        reference = autograd_last_layer_norms(model, c.features, c.labels)
        # float32 against float64: a few 1e-5 relative on the smallest norms of a saturated model
        # (the cancellation this guards against is an error of 100 %)
        torch.testing.assert_close(closed, reference, rtol=5e-5, atol=0.0)
        unsaturated = c.scores < 0.9  # where float32 autograd on the layer itself is accurate
        if unsaturated.any():
            own_layer = autograd_last_layer_norms(
                model, c.features[unsaturated], c.labels[unsaturated], float64=False)
            torch.testing.assert_close(closed[unsaturated], own_layer, rtol=1e-5, atol=0.0)
        not_argmax += int((c.logits.argmax(1) != c.labels).sum())
    return not_argmax


def test_isr_small_fits_the_size_budget_and_unknown_architectures_are_refused():
    assert state_dict_megabytes(random_model()) <= 15.0
    with pytest.raises(ValueError, match='unknown architecture'):
        build_model('yolo', NUM_CLASSES, HEIGHT, WIDTH)


def test_torchvision_architecture_builds_without_weights():
    model = build_model('fasterrcnn_mobilenet_v3_large_320_fpn', 4, 160, 320)
    assert model.roi_heads.box_predictor.cls_score.out_features == 4
    assert model.transform.min_size == (160,)


def test_captured_detections_are_the_models_own_detections():
    model = random_model().eval()
    images = [torch.rand(3, HEIGHT, WIDTH), torch.rand(3, HEIGHT - 20, WIDTH - 50)]
    with torch.no_grad():
        expected = model(images)
        captured = forward_with_features(model, images)
    for e, c in zip(expected, captured, strict=True):
        assert len(c.boxes) > 0
        torch.testing.assert_close(c.boxes, e['boxes'])
        torch.testing.assert_close(c.scores, e['scores'])
        assert torch.equal(c.labels, e['labels'])


def test_closed_form_equals_autograd_on_random_weight_model_including_non_argmax_labels():
    model = random_model(seed=3).eval()
    torch.manual_seed(4)
    images = [torch.rand(3, HEIGHT, WIDTH) for _ in range(2)]
    assert check_closed_form_against_autograd(model, images) > 0


def test_closed_form_equals_autograd_when_the_model_is_confident():
    # Scaled-up logits saturate the softmax (p of the label within ~1e-7 of 1), the regime of a
    # trained model where p - onehot cancels in float32.
    model = random_model(seed=5, score_threshold=0.5).eval()
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.mul_(400.0)
    torch.manual_seed(6)
    images = [torch.rand(3, HEIGHT, WIDTH)]
    with torch.no_grad():
        (captured,) = forward_with_features(model, images)
    assert (captured.scores > 1 - 1e-6).any()
    check_closed_form_against_autograd(model, images)


def test_closed_form_equals_autograd_on_the_shipped_default_model():
    path = default_checkpoint_path()
    if not path.is_file():
        pytest.skip(f'default model {path} not present (trained by `importance-sampler train`)')
    loaded = load_checkpoint(path, score_threshold=0.01)
    model = loaded.model.eval()
    height, width = loaded.min_size, loaded.max_size
    scene = torch.full((3, height, width), 0.45)
    scene[:, height // 2:] = 0.3  # road
    generator = torch.Generator().manual_seed(0)
    for left in range(10, width - 60, width // 6):  # a row of box-like blobs of random colours
        top = height // 2 - 10
        scene[:, top:top + 24, left:left + 40] = torch.rand(3, 1, 1, generator=generator)
    noise = torch.rand(3, height, width, generator=generator)
    check_closed_form_against_autograd(model, [scene, noise])


def test_frame_descriptor_is_mean_and_sd_of_the_box_head_over_the_proposals(random_checkpoint):
    detector = Detector(DetectorConfig(checkpoint=random_checkpoint, score_threshold=0.02))
    images = [random_image(3), random_image(4)]
    frames = detector.detect_batch(images, [1, 2])
    heads = detector.model.roi_heads
    for image, frame in zip(images, frames, strict=True):
        tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255
        with torch.no_grad():
            computed = proposals_and_features(detector.model, [tensor])
            pooled = heads.box_roi_pool(computed.feature_maps, computed.proposals,
                                        computed.image_sizes)
            features = heads.box_head(pooled)
        width = features.shape[1]
        assert frame.descriptor.shape == (2 * width,) and len(computed.proposals[0]) > 1
        np.testing.assert_allclose(frame.descriptor[:width], features.mean(0).numpy(),
                                   rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(frame.descriptor[width:], features.std(0).numpy(),
                                   rtol=1e-4, atol=1e-6)
    assert not np.allclose(frames[0].descriptor, frames[1].descriptor)


def test_detector_fills_frame_detections(random_checkpoint):
    detector = Detector(DetectorConfig(checkpoint=random_checkpoint, score_threshold=0.02,
                                       frame_min_box_height=0.0))
    image = random_image(1)
    frame = detector.detect(image, stamp_ns=123, frame_id='camera')
    assert len(frame) > 0
    assert frame.stamp_ns == 123 and frame.frame_id == 'camera'
    assert frame.model_name == 'isr_small:random.pt'
    assert frame.inference_ms > 0
    assert set(frame.class_ids) <= set(range(1, NUM_CLASSES))
    assert frame.class_names == [DEFAULT_CLASS_NAMES[i] for i in frame.class_ids]
    assert np.all(np.diff(frame.scores) <= 0)  # descending score order
    assert np.all(frame.boxes[:, 2] <= WIDTH) and np.all(frame.boxes[:, 3] <= HEIGHT)
    # importances are the closed form of this very model's features
    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    with torch.no_grad():
        (captured,) = forward_with_features(detector.model, [tensor])
    expected = last_layer_gradient_norms(captured.features, captured.logits, captured.labels)
    np.testing.assert_allclose(frame.importances, expected.numpy(), rtol=1e-5)
    assert frame.frame_importance == pytest.approx(float(np.sum(frame.importances)), rel=1e-6)
    assert frame.aggregation == 'sum'


def test_boxes_are_in_original_image_pixels(random_checkpoint):
    detector = Detector(DetectorConfig(checkpoint=random_checkpoint, score_threshold=0.02))
    frame = detector.detect(random_image(2, 2 * HEIGHT, 2 * WIDTH), stamp_ns=0)
    assert len(frame) > 0
    assert frame.boxes[:, 2].max() > WIDTH or frame.boxes[:, 3].max() > HEIGHT
    assert np.all(frame.boxes[:, 2] <= 2 * WIDTH) and np.all(frame.boxes[:, 3] <= 2 * HEIGHT)


@pytest.mark.parametrize('aggregation', ['sum', 'max', 'mean'])
def test_aggregation_modes(random_checkpoint, aggregation):
    detector = Detector(DetectorConfig(checkpoint=random_checkpoint, score_threshold=0.02,
                                       aggregation=aggregation, frame_min_box_height=0.0))
    frame = detector.detect(random_image(5), stamp_ns=0)
    assert len(frame) > 1
    expected = getattr(np, aggregation)(frame.importances.astype(np.float64))
    assert frame.frame_importance == pytest.approx(expected, rel=1e-6)
    assert frame.aggregation == aggregation


def test_frame_importance_counts_only_boxes_of_the_labelling_height(random_checkpoint):
    image = random_image(5)
    every = Detector(DetectorConfig(checkpoint=random_checkpoint, score_threshold=0.02,
                                    aggregation='sum', frame_min_box_height=0.0)).detect(image, 0)
    heights = every.boxes[:, 3] - every.boxes[:, 1]
    cut = float(np.median(heights))
    tall = heights >= cut
    assert 0 < tall.sum() < len(every)
    only_tall = Detector(DetectorConfig(checkpoint=random_checkpoint, score_threshold=0.02,
                                        aggregation='sum', frame_min_box_height=cut)
                         ).detect(image, 0)
    # the short boxes are still published, they just do not count toward the frame
    np.testing.assert_allclose(only_tall.importances, every.importances)
    assert only_tall.frame_importance == pytest.approx(
        float(every.importances[tall].astype(np.float64).sum()), rel=1e-6)
    above_all = Detector(DetectorConfig(checkpoint=random_checkpoint, score_threshold=0.02,
                                        frame_min_box_height=float(heights.max()) + 1)).detect(
        image, 0)
    assert len(above_all) == len(every) and above_all.frame_importance == 0.0


def test_frame_without_detections_has_zero_importance(random_checkpoint):
    detector = Detector(DetectorConfig(checkpoint=random_checkpoint, score_threshold=1.0))
    frame = detector.detect(random_image(6), stamp_ns=7)
    assert len(frame) == 0 and frame.frame_importance == 0.0 and frame.stamp_ns == 7


@pytest.mark.slow
def test_detect_batch_matches_single_frames(random_checkpoint):
    detector = Detector(DetectorConfig(checkpoint=random_checkpoint, score_threshold=0.02))
    images = [random_image(8), random_image(9)]
    batch = detector.detect_batch(images, [1, 2], ['a', 'b'])
    for image, frame in zip(images, batch, strict=True):
        single = detector.detect(image, stamp_ns=frame.stamp_ns)
        np.testing.assert_allclose(frame.scores[:5], single.scores[:5], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(frame.importances[:5], single.importances[:5], rtol=1e-3)
    assert [f.frame_id for f in batch] == ['a', 'b']


def test_bad_images_are_refused_with_a_clear_error(random_checkpoint):
    detector = Detector(DetectorConfig(checkpoint=random_checkpoint))
    with pytest.raises(ValueError, match='uint8'):
        detector.detect(np.zeros((8, 8, 3), np.float32), stamp_ns=0)
    with pytest.raises(ValueError, match=r'\(H, W, 3\)'):
        detector.detect(np.zeros((8, 8), np.uint8), stamp_ns=0)
    with pytest.raises(ValueError, match=r'\(H, W, 3\)'):
        detector.detect(np.zeros((0, 8, 3), np.uint8), stamp_ns=0)


def test_bare_state_dict_loads_with_config_architecture(tmp_path):
    path = tmp_path / 'bare.pt'
    torch.save(random_model().state_dict(), path)
    loaded = load_checkpoint(path, architecture='isr_small')
    assert loaded.class_names == DEFAULT_CLASS_NAMES and loaded.meta == {}
    assert (loaded.min_size, loaded.max_size) == (192, 640)


def test_checkpoint_meta_round_trips(random_checkpoint):
    loaded = load_checkpoint(random_checkpoint)
    assert loaded.architecture == 'isr_small'
    assert loaded.class_names == DEFAULT_CLASS_NAMES
    assert (loaded.min_size, loaded.max_size) == (HEIGHT, WIDTH)
    assert loaded.meta['note'] == 'random weights'
    assert not loaded.model.training


def test_mismatching_checkpoints_name_the_file_and_the_keys(tmp_path, random_checkpoint):
    bare = tmp_path / 'bare.pt'
    torch.save(random_model().state_dict(), bare)
    shapes = r'bare\.pt.*cls_score\.weight: checkpoint \(6, 256\) vs model \(3, 256\)'
    with pytest.raises(CheckpointError, match=shapes):
        load_checkpoint(bare, class_names=['__background__', 'car', 'truck'])
    with pytest.raises(CheckpointError, match=r'bare\.pt.*missing keys: backbone\.body'):
        load_checkpoint(bare, architecture='fasterrcnn_mobilenet_v3_large_320_fpn')
    with pytest.raises(CheckpointError, match=r'random\.pt.*isr_small.*not.*resnet50'):
        load_checkpoint(random_checkpoint, architecture='fasterrcnn_resnet50_fpn')
    with pytest.raises(CheckpointError, match=r'random\.pt.*trained on classes'):
        load_checkpoint(random_checkpoint, class_names=['__background__', 'car'])
    with pytest.raises(CheckpointError, match=r'nothing\.pt does not exist'):
        load_checkpoint(tmp_path / 'nothing.pt')
    garbage = tmp_path / 'garbage.pt'
    garbage.write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match=r'garbage\.pt cannot be read'):
        load_checkpoint(garbage)


def test_config_is_validated():
    with pytest.raises(ValueError, match='aggregation'):
        DetectorConfig(aggregation='median')
    with pytest.raises(ValueError, match='score_threshold'):
        DetectorConfig(score_threshold=1.5)
    with pytest.raises(ValueError, match='__background__'):
        DetectorConfig(class_names=['car', 'truck'])
    with pytest.raises(ValueError, match='half'):
        DetectorConfig(half=True)
    with pytest.raises(ValueError, match='device'):
        DetectorConfig(device='tpu')


@pytest.mark.skipif(torch.cuda.is_available(), reason='CUDA is present on this machine')
def test_cuda_requested_but_absent_is_a_clear_error(random_checkpoint):
    with pytest.raises(DetectorError, match='CUDA is not available'):
        Detector(DetectorConfig(checkpoint=random_checkpoint, device='cuda'))


@pytest.mark.slow
def test_every_scorer_is_published_and_importance_is_the_configured_one(random_checkpoint):
    image = random_image(3)
    for scorer in SCORERS:
        det = Detector(DetectorConfig(checkpoint=random_checkpoint, score_threshold=0.02,
                                      scorer=scorer)).detect(image, 1)
        assert len(det) > 0 and det.scorer == scorer and det.uncertainty_names == SCORERS
        assert det.uncertainty.shape == (len(det), len(SCORERS))
        np.testing.assert_array_equal(det.importances, det.uncertainty_of(scorer))
        assert (det.uncertainty >= 0).all()
    # least confidence is 1 - score: the detection's score is its class probability
    np.testing.assert_allclose(det.uncertainty_of('least_confidence'), 1 - det.scores, atol=1e-5)


@pytest.mark.slow
def test_candidates_are_the_sub_threshold_boxes_and_leave_detections_unchanged(random_checkpoint):
    image = random_image(4)
    plain = Detector(DetectorConfig(checkpoint=random_checkpoint, score_threshold=0.3)).detect(
        image, 1)
    # the model's own score filter at the floor: every box above it
    low = Detector(DetectorConfig(checkpoint=random_checkpoint, score_threshold=0.02)).detect(
        image, 1)
    config = DetectorConfig(checkpoint=random_checkpoint, score_threshold=0.3,
                            candidate_floor=0.02, frame_min_box_height=0.0)
    both = Detector(config).detect(image, 1)
    np.testing.assert_allclose(both.boxes, plain.boxes)
    np.testing.assert_allclose(both.scores, plain.scores)
    cand = both.candidates
    assert cand is not None and len(cand) > 0
    assert ((cand.scores > 0.02) & (cand.scores <= 0.3)).all()
    assert len(both) + len(cand) == min(len(low), 100) or len(cand) == 100
    # the default aggregation is the sum; a frame without detections scores 0
    assert both.frame_importance == pytest.approx(float(np.sum(both.importances)), rel=1e-5)
    pooled = Detector(DetectorConfig(checkpoint=random_checkpoint, score_threshold=0.3,
                                     candidate_floor=0.02, candidates_in_frame=True,
                                     frame_min_box_height=0.0)).detect(
        image, 1)
    assert pooled.frame_importance == pytest.approx(
        float(np.sum(np.concatenate([both.importances, cand.importances]))), rel=1e-5)
    # a floor at or above the threshold hands on none, like 0
    above = Detector(DetectorConfig(checkpoint=random_checkpoint, score_threshold=0.3,
                                    candidate_floor=0.5)).detect(image, 1)
    assert above.candidates is None
    np.testing.assert_allclose(above.boxes, plain.boxes)
    with pytest.raises(ValueError, match='candidate_floor'):
        DetectorConfig(score_threshold=0.3, candidate_floor=0.5, candidates_in_frame=True)


def test_coverage_reference_command_saves_one_descriptor_per_frame(random_checkpoint, tmp_path,
                                                                   capsys):
    from importance_sampler_ros.cli import main

    out = tmp_path / 'ref.npy'
    assert main(['coverage-reference', '--out', str(out), '--frames', '3',
                 '--checkpoint', str(random_checkpoint)]) == 0
    assert 'coverage reference: 3/3 frames' in capsys.readouterr().err
    assert main(['coverage-reference', '--out', str(out), '--frames', '3', '--no-progress',
                 '--checkpoint', str(random_checkpoint)]) == 0
    assert 'coverage reference' not in capsys.readouterr().err
    reference = np.load(out)
    detector = Detector(DetectorConfig(checkpoint=random_checkpoint))
    assert reference.shape == (3, 2 * detector.model.roi_heads.box_head.fc7.out_features)
    assert np.isfinite(reference).all() and not np.allclose(reference[0], reference[1])


def test_coverage_reference_from_a_bag_reads_its_images_as_replay_does(random_checkpoint,
                                                                      tmp_path):
    from replay_bags import write_drive

    from importance_sampler_ros.cli import main

    write_drive(tmp_path / 'drive', frames=5)
    out = tmp_path / 'ref.npy'
    assert main(['coverage-reference', '--out', str(out), '--bag', str(tmp_path / 'drive'),
                 '--frames', '3', '--checkpoint', str(random_checkpoint)]) == 0
    assert np.load(out).shape[0] == 3
    (tmp_path / 'empty').mkdir()
    assert main(['coverage-reference', '--out', str(tmp_path / 'x.npy'),
                 '--bag', str(tmp_path / 'empty'), '--checkpoint', str(random_checkpoint)]) == 2
    assert not (tmp_path / 'x.npy').exists()


def test_with_candidate_floor_hands_on_what_a_detector_with_that_floor_publishes():
    candidates = FrameDetections(stamp_ns=1, boxes=np.tile([0.0, 0.0, 5.0, 5.0], (3, 1)),
                                 class_ids=[1, 2, 3], class_names=['a', 'b', 'c'],
                                 scores=[0.05, 0.1, 0.4])
    det = FrameDetections(stamp_ns=1, boxes=[[0.0, 0.0, 9.0, 9.0]], class_ids=[1],
                          class_names=['a'], scores=[0.9], candidates=candidates)
    floor_01 = with_candidate_floor(det, 0.1)
    assert floor_01.candidates.class_ids.tolist() == [2, 3]
    assert len(floor_01) == 1 and len(det.candidates) == 3  # the input is not changed
    assert with_candidate_floor(det, None).candidates is None  # the floor publishes none
    assert with_candidate_floor(FrameDetections(stamp_ns=1), 0.1).candidates is None
    # DetectorConfig says which floor publishes: none for 0 and at or above the threshold
    assert DetectorConfig(candidate_floor=0.1).published_candidate_floor == 0.1
    assert DetectorConfig(candidate_floor=0.0).published_candidate_floor is None
    at_threshold = DetectorConfig(score_threshold=0.3, candidate_floor=0.3)
    assert at_threshold.published_candidate_floor is None
