"""What the bags this package writes can be: storages and rosbag2 metadata versions (no rosbags
import here, so the parameter registry can name them).

Metadata version 8 is read by `ros2 bag` on Humble, Jazzy and Kilted; 9 (offered_qos_profiles as a
YAML list, QoS policies by name) only from Jazzy on: Humble's reader takes offered_qos_profiles as
a string and fails with "bad conversion". rosbag2 never refuses a higher version number, it reads
the fields it knows. Sources: docs/BAG_FORMAT.md.
"""

STORAGES = ('mcap', 'sqlite3')
BAG_VERSIONS = (8, 9)
DEFAULT_BAG_VERSION = 8
