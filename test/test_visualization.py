"""Debug image and markers: what is drawn where, and markers that both backends serialise alike."""
import math

import numpy as np
import pytest
from conftest import spin_until
from rclpy.serialization import deserialize_message, serialize_message
from visualization_msgs.msg import MarkerArray

from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.detection.detections import FrameDetections
from importance_sampler_ros.viz.config import VizConfig
from importance_sampler_ros.viz.drawing import (
    RELABEL_COLOR,
    CameraModel,
    ImportanceScale,
    RelabelMark,
    RunningKeepRatio,
    detection_label,
    draw_debug_image,
    importance_color,
    marker_array,
    rosbags_marker_types,
)

STAMP = 1_700_000_000_123_456_789


def two_detections() -> FrameDetections:
    return FrameDetections(
        stamp_ns=STAMP,
        frame_id='camera',
        boxes=np.array([[20, 30, 80, 90], [120, 40, 180, 100]], np.float32),
        class_ids=np.array([1, 4]),
        class_names=['car', 'pedestrian'],
        scores=np.array([0.9, 0.4]),
        importances=np.array([0.0, 2.0]),
        track_ids=np.array([3, 7]),
        distances=np.array([np.nan, 25.0]),
        frame_importance=2.0,
    )


def test_importance_colour_runs_blue_to_red_and_clips():
    low, high = importance_color(0.0, 1.0), importance_color(1.0, 1.0)
    assert low[2] > 0.9 and low[0] < 0.2
    assert high[0] > 0.9 and high[2] < 0.2
    assert importance_color(5.0, 1.0) == high
    assert importance_color(float('nan'), 1.0) == low
    assert importance_color(1.0, 0.0) == low
    assert all(0.0 <= c <= 1.0 for c in importance_color(0.3, 1.0))


def test_importance_scale_fixed_or_decaying_max():
    assert ImportanceScale(fixed=2.0).update([10.0]) == 2.0
    scale = ImportanceScale(decay=0.5)
    assert scale.update([4.0, float('nan')]) == 4.0
    assert scale.update([1.0]) == 2.0
    assert scale.update([]) == 1.0


def test_running_keep_ratio_since_start_and_windowed():
    since_start, window = RunningKeepRatio(), RunningKeepRatio(window=2)
    for kept in (True, False, False, False):
        since_start.add(kept)
        window.add(kept)
    assert since_start.value == 0.25 and (since_start.kept, since_start.decided) == (1, 4)
    assert window.value == 0.0 and window.decided == 2


def test_label_names_class_score_track_importance_and_relabel():
    det = two_detections()
    assert detection_label(det, 0) == 'car 0.90 #3 g=0'
    label = detection_label(det, 1, RelabelMark(7, 'cyclist', 'pedestrian'))
    assert label == 'pedestrian 0.40 #7 g=2 relabel cyclist->pedestrian'


def test_debug_image_draws_importance_coloured_boxes_and_relabel_marks():
    rgb = np.full((150, 240, 3), 128, np.uint8)
    det = two_detections()
    drawn = draw_debug_image(rgb, det, importance_scale=2.0,
                             relabels={7: RelabelMark(7, 'cyclist', 'pedestrian')},
                             line_width=2)
    assert drawn.shape == rgb.shape and drawn.dtype == np.uint8
    assert (rgb == 128).all()  # input untouched
    low = np.array([round(255 * c) for c in importance_color(0.0, 2.0)])
    high = np.array([round(255 * c) for c in importance_color(2.0, 2.0)])
    magenta = np.array([round(255 * c) for c in RELABEL_COLOR])
    # left edge of each box in its importance colour, middle of the boxes untouched
    assert (drawn[60, 20] == low).all()
    assert (drawn[70, 120] == high).all()
    assert (drawn[60, 50] == 128).all() and (drawn[70, 150] == 128).all()
    # the relabelled track (id 7) has a magenta outer outline, the other does not
    assert (drawn[70, 117] == magenta).all()
    assert not (drawn[60, 17] == magenta).all()
    # label text above each box changed pixels there
    assert (drawn[20:29, 20:60] != 128).any()


def test_debug_image_survives_boxes_outside_the_image_and_status_lines():
    rgb = np.zeros((50, 60, 3), np.uint8)
    det = FrameDetections(stamp_ns=1, boxes=np.array([[-30, -5, 500, 400],
                                                      [np.nan, 0, 1, 1]], np.float32),
                          class_ids=np.array([1, 1]), class_names=['car', 'car'],
                          scores=np.array([0.5, 0.5]))
    drawn = draw_debug_image(rgb, det, importance_scale=0.0, status_lines=['keep ratio 0.1'])
    assert drawn.shape == rgb.shape
    assert drawn.any()


def test_debug_image_rejects_non_rgb():
    with pytest.raises(ValueError, match='uint8'):
        draw_debug_image(np.zeros((4, 4), np.uint8), FrameDetections(stamp_ns=0),
                         importance_scale=1.0)


def test_marker_array_has_a_box_and_a_text_per_detection():
    det = two_detections()
    types = rosbags_marker_types()
    camera = CameraModel(width=240, height=150, focal_length_px=100.0)
    array = marker_array(det, types, camera=camera, importance_scale=2.0,
                         relabels={7: RelabelMark(7, 'cyclist', 'pedestrian')},
                         lifetime_s=0.25, default_depth_m=10.0)
    markers = array.markers
    assert markers[0].action == types.Marker.DELETEALL
    boxes = [m for m in markers if m.ns == 'boxes']
    labels = [m for m in markers if m.ns == 'labels']
    assert [m.id for m in boxes] == [0, 1] and [m.id for m in labels] == [0, 1]
    assert all(m.type == types.Marker.LINE_STRIP and len(m.points) == 5 for m in boxes)
    assert labels[1].text == 'pedestrian 0.40 #7 g=2 relabel cyclist->pedestrian'
    for m in boxes + labels:
        assert m.header.frame_id == 'camera'
        assert m.header.stamp.sec * 10**9 + m.header.stamp.nanosec == STAMP
        assert (m.lifetime.sec, m.lifetime.nanosec) == (0, 250_000_000)
        assert all(0.0 <= c <= 1.0 for c in (m.color.r, m.color.g, m.color.b, m.color.a))
    # unknown distance -> default depth; known distance -> that depth, through the pinhole
    assert boxes[0].points[0].z == 10.0 and boxes[1].points[0].z == 25.0
    assert math.isclose(boxes[0].points[0].x, (20 - 120) * 10.0 / 100.0)
    assert math.isclose(boxes[1].points[2].y, (100 - 75) * 25.0 / 100.0)
    # the relabelled track is magenta
    assert (labels[1].color.r, labels[1].color.g, labels[1].color.b) == RELABEL_COLOR


def test_marker_array_rosbags_cdr_reads_in_rclpy():
    det = two_detections()
    camera = CameraModel(width=240, height=150, focal_length_px=100.0)
    array = marker_array(det, rosbags_marker_types(), camera=camera, importance_scale=1.0)
    data = bag_io.typestore().serialize_cdr(array, 'visualization_msgs/msg/MarkerArray')
    back = deserialize_message(bytes(data), MarkerArray)
    assert [m.text for m in back.markers] == [m.text for m in array.markers]
    assert len(serialize_message(back)) == len(data)


def test_marker_array_builds_with_rclpy_classes():
    from importance_sampler_ros.nodes.viz_node import marker_types

    camera = CameraModel(width=240, height=150, focal_length_px=100.0)
    array = marker_array(two_detections(), marker_types(), camera=camera, importance_scale=1.0)
    assert isinstance(array, MarkerArray) and len(array.markers) == 5
    assert array.markers[3].points[0].z == 25.0


def test_viz_params_defaults_are_valid():
    values = VizConfig()
    assert values.image_reliability == 'best_effort' and values.marker_lifetime_s > 0


# --- viz_node in this process: inputs published here, outputs checked here -------------------


@pytest.mark.ros
def test_viz_node_draws_relabels_publishes_numbers_and_survives_bad_images(monkeypatch):

    import rclpy
    from importance_sampler_ros.msg import RelabelArray, SampleDecision
    from live_graph_fixtures import domain_id
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float32

    from importance_sampler_ros.bags.images import image_to_rgb, rgb_to_image_msg
    from importance_sampler_ros.bags.messages import detections_to_msg, header_msg
    from importance_sampler_ros.nodes.message_types import rclpy_types
    from importance_sampler_ros.nodes.viz_node import VizNode

    monkeypatch.setenv('ROS_DOMAIN_ID', str(domain_id(4)))
    rclpy.init()
    try:
        types = rclpy_types()
        viz = VizNode()
        io = rclpy.create_node('viz_test_io')
        executor = SingleThreadedExecutor()
        executor.add_node(viz)
        executor.add_node(io)
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        image_pub = io.create_publisher(Image, '/camera/image_raw', reliable)
        det_pub = io.create_publisher(types.DetectionArray,
                                      '/importance_sampler/tracked_detections', reliable)
        relabel_pub = io.create_publisher(RelabelArray, '/importance_sampler/relabels', reliable)
        decision_pub = io.create_publisher(SampleDecision, '/importance_sampler/decisions',
                                           reliable)
        got: dict[str, list] = {'debug': [], 'markers': [], 'importance': [], 'ratio': []}
        io.create_subscription(Image, '/importance_sampler/debug_image',
                               lambda m: got['debug'].append(m), reliable)
        io.create_subscription(MarkerArray, '/importance_sampler/markers',
                               lambda m: got['markers'].append(m), reliable)
        io.create_subscription(Float32, '/importance_sampler/frame_importance',
                               lambda m: got['importance'].append(m.data), reliable)
        io.create_subscription(Float32, '/importance_sampler/keep_ratio',
                               lambda m: got['ratio'].append(m.data), reliable)

        spin_until(executor, lambda: image_pub.get_subscription_count() > 0
                   and det_pub.get_subscription_count() > 0
                   and viz.debug_image_pub.get_subscription_count() > 0
                   and viz.markers_pub.get_subscription_count() > 0
                   and decision_pub.get_subscription_count() > 0, 'discovery', 10.0)
        det = two_detections()
        # a frame whose image cannot be drawn: logged, skipped
        bad = rgb_to_image_msg(np.zeros((150, 240, 3), np.uint8), STAMP - 10**8, 'camera', types)
        bad.encoding = 'yuv422'
        image_pub.publish(bad)
        det_pub.publish(detections_to_msg(
            FrameDetections(stamp_ns=STAMP - 10**8, frame_id='camera'), types))
        # the frame that is drawn, with a relabel of track 7 and two decisions
        image_pub.publish(rgb_to_image_msg(np.full((150, 240, 3), 128, np.uint8), STAMP,
                                           'camera', types))
        det_pub.publish(detections_to_msg(det, types))
        relabel = types.Relabel(header=header_msg(STAMP, 'camera', types), track_id=7,
                                old_class_id=5, old_class_name='cyclist', new_class_id=4,
                                new_class_name='pedestrian', confidence=0.8, reissued=False,
                                observations=[])
        relabel_pub.publish(RelabelArray(header=header_msg(STAMP, 'camera', types),
                                         relabels=[relabel]))
        for kept in (True, False):
            decision_pub.publish(SampleDecision(header=header_msg(STAMP, 'camera', types),
                                                kept=kept, probability=0.5, reason='sampled'))
        spin_until(executor, lambda: got['debug'] and got['markers'] and len(got['ratio']) == 2
                   and len(got['importance']) == 2, 'debug image, markers and numbers', 10.0)
        (drawn,) = got['debug']
        assert drawn.header.stamp.sec * 10**9 + drawn.header.stamp.nanosec == STAMP
        pixels = image_to_rgb(drawn)
        magenta = np.array([round(255 * c) for c in RELABEL_COLOR])
        assert (pixels[70, 117] == magenta).all()  # track 7 marked as relabelled
        assert got['importance'] == [0.0, 2.0]
        assert got['ratio'] == [1.0, 0.5]
        labels = [m.text for m in got['markers'][0].markers if m.ns == 'labels']
        assert labels[1].endswith('relabel cyclist->pedestrian')
        assert viz.frames_drawn == 1  # the undrawable frame was skipped, the node kept going
        executor.remove_node(viz)
        executor.remove_node(io)
        viz.destroy_node()
        io.destroy_node()
    finally:
        rclpy.shutdown()


@pytest.mark.ros
def test_viz_node_rejects_a_bad_parameter_naming_it():
    import subprocess
    import sys

    from live_graph_fixtures import domain_id, ros_env

    done = subprocess.run(
        [sys.executable, '-m', 'importance_sampler_ros.nodes.viz_node', '--ros-args',
         '-p', 'line_width:=0'], env=ros_env(domain_id(4)), capture_output=True, text=True,
        timeout=60)
    assert done.returncode == 2
    assert "invalid parameter: viz_node: parameter 'line_width' = 0: must be in [1, 20]" in (
        done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1
