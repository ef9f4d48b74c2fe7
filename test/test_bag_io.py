"""bag_io: what BagWriter writes, independent readers read back; bad paths give BagError."""
import numpy as np
import pytest
from message_samples import sample_detections
from rosbags.highlevel import AnyReader

from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.bags.images import rgb_to_image_msg
from importance_sampler_ros.bags.messages import detections_from_msg, detections_to_msg


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_written_bag_reads_back(tmp_path, storage):
    types = bag_io.msg_types()
    det = sample_detections()
    rgb = np.zeros((4, 6, 3), np.uint8)
    path = tmp_path / 'bag'
    with bag_io.BagWriter(path, storage=storage) as writer:
        writer.write('/camera/image_raw', bag_io.IMAGE_TYPE, det.stamp_ns,
                     rgb_to_image_msg(rgb, det.stamp_ns, 'camera', types))
        writer.write('/dets', bag_io.msgtype('DetectionArray'), det.stamp_ns,
                     bag_io.serialize(detections_to_msg(det, types)))
    assert bag_io.topics(path) == {
        '/camera/image_raw': 'sensor_msgs/msg/Image',
        '/dets': 'importance_sampler_ros/msg/DetectionArray',
    }
    # an independent reader with only the types stored in the bag
    with AnyReader([path]) as reader:
        (connection, stamp, raw), = [m for m in reader.messages() if m[0].topic == '/dets']
        back = detections_from_msg(reader.deserialize(raw, connection.msgtype))
    assert stamp == det.stamp_ns
    assert back.class_names == det.class_names and np.allclose(back.scores, det.scores)


def test_missing_and_non_bags_raise_bag_error(tmp_path):
    with pytest.raises(bag_io.BagError, match='no such bag'):
        bag_io.topics(tmp_path / 'nope')
    junk = tmp_path / 'junk.mcap'
    junk.write_bytes(b'not a bag at all')
    with pytest.raises(bag_io.BagError, match='not a readable rosbag2'):
        bag_io.topics(junk)
