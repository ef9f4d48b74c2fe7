"""The shipped RViz config and Foxglove layouts name topics, types and fields the package has.

Live views are checked against a real viz_node's publishers and subscriptions (names, types and
QoS reliability, read from the ROS graph); the recording layout against the topics of a bag the
replay wrote, read back with rosbags. Message fields in plot paths are looked up in the types'
definitions.
"""
import json
import time

import pytest
import rclpy
import yaml
from live_graph_fixtures import REPO, domain_id
from replay_bags import write_drive
from rosbags.highlevel import AnyReader

from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.offline.replay import replay_bag

RVIZ = REPO / 'config' / 'importance_sampler.rviz'
FOXGLOVE_LIVE = REPO / 'config' / 'foxglove_live.json'
FOXGLOVE_RECORDING = REPO / 'config' / 'foxglove_recording.json'
# RViz display class -> the message type it shows
RVIZ_TYPES = {
    'rviz_default_plugins/Image': 'sensor_msgs/msg/Image',
    'rviz_default_plugins/MarkerArray': 'visualization_msgs/msg/MarkerArray',
}


@pytest.fixture(scope='module')
def live_graph():
    """topic -> (type, reliability of the package's endpoint) for a real viz_node."""
    from rclpy.qos import ReliabilityPolicy

    from importance_sampler_ros.nodes.viz_node import VizNode

    rclpy.init(args=['--ros-args', '-r', '__ns:=/views_test'], domain_id=domain_id(4))
    try:
        node = VizNode()
        graph = {}
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and len(graph) < 7:
            for lookup, infos in ((node.get_publisher_names_and_types_by_node,
                                   node.get_publishers_info_by_topic),
                                  (node.get_subscriber_names_and_types_by_node,
                                   node.get_subscriptions_info_by_topic)):
                for topic, types in lookup('viz_node', '/views_test'):
                    (info,) = [i for i in infos(topic) if i.node_name == 'viz_node']
                    graph[topic] = (types[0], info.qos_profile.reliability)
            time.sleep(0.1)
        node.destroy_node()
    finally:
        rclpy.shutdown()
    graph = {t: (kind, 'reliable' if r == ReliabilityPolicy.RELIABLE else 'best effort')
             for t, (kind, r) in graph.items() if not t.startswith('/rosout')
             and not t.startswith('/parameter_events')}
    assert '/importance_sampler/debug_image' in graph
    return graph


def message_fields(msgtype: str, path: list[str]) -> None:
    """Fail unless `path` (field names) walks through the definition of `msgtype`."""
    store = bag_io.typestore()
    for name in path:
        fields = dict(store.fielddefs[msgtype][1])
        assert name in fields, f'{msgtype} has no field {name!r} (fields: {sorted(fields)})'
        kind = fields[name]
        msgtype = kind[1] if kind[0] == 2 else None  # a nested message type, else a base
        if msgtype is None:
            assert name == path[-1], f'{name} is not a message, cannot go on into {path}'


def foxglove_references(layout: dict) -> list[tuple[str, list[str]]]:
    """(topic, field path) of every panel of a Foxglove layout."""
    out = []
    for panel_id, config in layout['configById'].items():
        kind = panel_id.split('!')[0]
        if kind == 'Image':
            out.append((config['imageMode']['imageTopic'], []))
        elif kind == '3D':
            out += [(topic, []) for topic in config['topics']]
        elif kind == 'Plot':
            for path in config['paths']:
                topic, *fields = path['value'].split('.')
                out.append((topic, fields))
        elif kind == 'RawMessages':
            topic, *fields = config['topicPath'].split('.')
            out.append((topic, fields))
        else:
            raise AssertionError(f'{panel_id}: a panel kind this test does not know')
    panels = set(layout['configById'])

    def leaves(node):
        return [node] if isinstance(node, str) else leaves(node['first']) + leaves(node['second'])

    assert sorted(leaves(layout['layout'])) == sorted(panels), 'layout and panels differ'
    return out


@pytest.mark.ros
def test_rviz_displays_name_the_packages_topics_types_and_compatible_qos(live_graph):
    config = yaml.safe_load(RVIZ.read_text())
    displays = [d for d in config['Visualization Manager']['Displays'] if 'Topic' in d]
    shown = {d['Topic']['Value'] for d in displays}
    assert shown == {'/camera/image_raw', '/importance_sampler/debug_image',
                     '/importance_sampler/markers'}
    for display in displays:
        topic = display['Topic']['Value']
        assert topic in live_graph, f'{display["Name"]}: nothing of the package on {topic}'
        kind, reliability = live_graph[topic]
        assert RVIZ_TYPES[display['Class']] == kind, display['Name']
        # a reliable subscriber never matches a best-effort publisher
        wanted = display['Topic']['Reliability Policy'].lower()
        assert not (wanted == 'reliable' and reliability == 'best effort'), display['Name']
        if topic == '/camera/image_raw':  # the camera driver's sensor-data QoS
            assert wanted == 'best effort'
    assert config['Visualization Manager']['Global Options']['Fixed Frame'] == 'camera'


@pytest.mark.ros
def test_foxglove_live_layout_names_the_packages_topics_and_fields(live_graph):
    references = foxglove_references(json.loads(FOXGLOVE_LIVE.read_text()))
    topics = {topic for topic, _ in references}
    assert {'/importance_sampler/debug_image', '/importance_sampler/markers',
            '/importance_sampler/frame_importance', '/importance_sampler/keep_ratio'} <= topics
    for topic, fields in references:
        assert topic in live_graph, f'nothing of the package on {topic}'
        message_fields(live_graph[topic][0], fields)


@pytest.mark.slow
def test_foxglove_recording_layout_names_what_the_recorded_bag_holds(tmp_path):
    write_drive(tmp_path / 'drive', 30)
    replay_bag(tmp_path / 'drive', tmp_path / 'out', use_recorded_detections=True,
               overrides={'recorder_node': {'keep_ratio': 0.5, 'seed': 1}})
    splits = sorted(p for p in (tmp_path / 'out').iterdir() if p.is_dir())
    with AnyReader(splits) as reader:
        recorded = {c.topic: c.msgtype for c in reader.connections}
    references = foxglove_references(json.loads(FOXGLOVE_RECORDING.read_text()))
    assert {topic for topic, _ in references} == set(recorded)  # every recorded topic shown
    for topic, fields in references:
        message_fields(recorded[topic], fields)
