"""What the output splits carry: the rosbag2 metadata version and the fields each distro's
`ros2 bag` parses, in metadata.yaml and in the MCAP file's own metadata record.

The per-distro rules below restate rosbag2's metadata decoder (rosbag2_storage yaml.hpp and
qos.cpp, see docs/BAG_FORMAT.md): a field is read only from the version that introduced it, no
version number is refused, and before Jazzy offered_qos_profiles is parsed as a YAML string.
"""
import io

import pytest
import yaml
from mcap.reader import make_reader
from replay_bags import write_drive

from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.offline.replay import replay_bag
from importance_sampler_ros.recording.config import RecorderConfig
from importance_sampler_ros.registry import spec

OVERRIDES = {'keep_ratio': 0.5, 'seed': 1, 'split_bytes': 200_000}


def ros2_bag_reads(info: dict, distro: str) -> list[str]:
    """Why `ros2 bag info` of `distro` would fail on this metadata (empty: it reads it)."""
    version = info['version']
    problems = []
    required = ['storage_identifier', 'duration', 'starting_time', 'message_count',
                'topics_with_message_count', 'relative_file_paths']
    if version >= 3:
        required += ['compression_format', 'compression_mode']
    if version >= 5:
        required.append('files')
    problems += [f'missing {key}' for key in required if key not in info]
    for topic in info['topics_with_message_count']:
        qos = topic['topic_metadata']['offered_qos_profiles']
        if distro == 'humble' and not isinstance(qos, str):
            problems.append(f'{topic["topic_metadata"]["name"]}: offered_qos_profiles is a '
                            f'{type(qos).__name__}, humble parses a string (bad conversion)')
        if distro != 'humble' and version >= 9 and not isinstance(qos, list):
            problems.append('version 9 needs offered_qos_profiles as a list')
    return problems


def replayed_splits(tmp_path, **recorder):
    write_drive(tmp_path / 'drive', 60)
    replay_bag(tmp_path / 'drive', tmp_path / 'out', use_recorded_detections=True,
               overrides={'recorder_node': {**OVERRIDES, **recorder}})
    splits = sorted(p for p in (tmp_path / 'out').iterdir() if p.is_dir())
    assert len(splits) >= 2  # several splits: each one is checked
    return splits


def mcap_metadata(split):
    (mcap_file,) = split.glob('*.mcap')
    with open(mcap_file, 'rb') as stream:
        records = {m.name: m.metadata for m in make_reader(stream).iter_metadata()}
    return yaml.safe_load(io.StringIO(records['rosbag2']['serialized_metadata']))


def test_default_splits_are_version_8_and_every_distro_reads_them(tmp_path):
    assert RecorderConfig().bag_version == bag_io.DEFAULT_BAG_VERSION == 8
    assert spec('recorder_node', 'bag_version').default == 8
    for split in replayed_splits(tmp_path):
        info = yaml.safe_load((split / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
        assert info['version'] == 8
        for distro in ('humble', 'jazzy', 'kilted'):
            assert ros2_bag_reads(info, distro) == [], (split.name, distro)
        embedded = mcap_metadata(split)
        assert embedded['version'] == 8
        assert embedded['topics_with_message_count'] == info['topics_with_message_count']
        # the type hashes Jazzy and Kilted check are there (version 7 on)
        assert all(t['topic_metadata']['type_description_hash'].startswith('RIHS01_')
                   for t in info['topics_with_message_count'])


def test_version_9_on_request_is_what_jazzy_and_kilted_read_and_humble_does_not(tmp_path):
    for split in replayed_splits(tmp_path, bag_version=9):
        info = yaml.safe_load((split / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
        assert info['version'] == 9 and mcap_metadata(split)['version'] == 9
        assert ros2_bag_reads(info, 'jazzy') == ros2_bag_reads(info, 'kilted') == []
        assert 'humble parses a string' in ros2_bag_reads(info, 'humble')[0]


@pytest.mark.parametrize('version', [7, 10])
def test_unsupported_version_refused(tmp_path, version):
    with pytest.raises(ValueError, match=r'metadata version must be one of \(8, 9\)'):
        RecorderConfig(bag_version=version)
    with pytest.raises(ValueError, match='metadata version'):
        bag_io.BagWriter(tmp_path / 'x', version=version)
