"""The tracker node's core parameters: SORT (sort.py) and the near-to-far relabels (relabel.py)."""
from __future__ import annotations

from dataclasses import dataclass

from importance_sampler_ros.params import ParameterError, Settings, param

NEAR_RULES = ('and', 'or')


@dataclass(frozen=True)
class TrackerConfig(Settings):
    """SORT parameters."""

    iou_threshold: float = param(0.3, 'Smallest IoU between a detection and a track prediction '
                                 'that may be matched', min_value=0.0, max_value=1.0)
    max_age: int = param(3, 'Frames a track survives without a matched detection',
                         min_value=0, max_value=1000)
    min_hits: int = param(3, 'Detections (the first included) after which a track is confirmed '
                          'and published', min_value=1, max_value=1000)
    association_padding_px: float = param(
        1.0, 'Pixels added on every side of detection and predicted boxes before the IoU of the '
        'association (keeps tiny far boxes matchable; 0 = plain IoU; 2 let far tracks take '
        'their neighbours: docs/measurements/tracking_relabel.md, session 9)',
        min_value=0.0, max_value=100.0)
    far_max_age: int = param(10, 'Frames a confirmed track whose box is shorter than '
                             'far_height_px survives without a matched detection (far objects '
                             'are missed often); at least max_age is used',
                             min_value=0, max_value=1000)
    far_height_px: float = param(40.0, 'Box height in pixels below which a track coasts for '
                                 'far_max_age frames', min_value=0.0)
    lost_padding_per_frame: float = param(
        0.15, "Extra padding of a lost track's pairs (its predicted box and the detection) per "
        'frame without a match, as a share of the box height: an approaching object grows and '
        'drifts while unseen; at most one box height', min_value=0.0, max_value=10.0)
    buffer_ratio: float = param(2.0, 'Last association round: tracks and detections left '
                                'unmatched are matched on boxes grown by this share of their '
                                'own width and height on every side (buffered IoU, gate '
                                'iou_threshold): an object passing close by moves more than its '
                                'width per frame (0 = off; docs/measurements/tracking_relabel.md, '
                                'session 13)', min_value=0.0, max_value=10.0)
    buffer_min_height_px: float = param(30.0, 'Box height from which a track takes part in the '
                                        'buffered round (far boxes would take their neighbours)',
                                        min_value=0.0)
    match_candidates: bool = param(True, 'Second association round: tracks left unmatched take '
                                   "the detector's sub-threshold candidates (kept alive, never "
                                   'published)')
    candidate_iou_threshold: float = param(0.3, 'Smallest IoU between a candidate and a track '
                                           'prediction in the second round',
                                           min_value=0.0, max_value=1.0)
    duplicate_iou: float = param(0.5, 'IoU with a better-scored detection of another class from '
                                 'which a detection is a duplicate of it (per-class NMS left both '
                                 "on one object): it joins that detection's track, unpublished "
                                 '(0 = off)', min_value=0.0, max_value=1.0)
    duplicate_containment: float = param(0.0, 'Share of the smaller box inside a better-scored '
                                         'detection of another class from which it is a '
                                         'duplicate of it (part boxes on one object; 0 = off)',
                                         min_value=0.0, max_value=1.0)
    max_detections: int = param(500, 'Detections (and candidates) per frame that are tracked; '
                                'the lowest-scored ones beyond are not (track id 0) and counted '
                                'as dropped', min_value=1, max_value=1000000)
    max_tracks: int = param(2000, 'Live tracks at most; beyond it no new track starts',
                            min_value=1, max_value=1000000)


@dataclass(frozen=True)
class RelabelConfig(Settings):
    """Near-field rule and vote of the near-to-far relabels."""

    near_min_height_px: float = param(30.0, 'Box height in pixels from which an observation can '
                                      'be near-field (held out, far labels fixed / broken: 151 / '
                                      '19 from 30 px, 23 / 2 from 60 px; '
                                      'docs/measurements/tracking_relabel.md, session 17)',
                                      min_value=0.0)
    near_min_score: float = param(0.9, 'Detection score from which an observation can be '
                                  'near-field', min_value=0.0, max_value=1.0)
    near_rule: str = param('and', "How the two near-field tests combine: 'and' (both) or 'or' "
                           '(either)', choices=NEAR_RULES)
    near_window: int = param(5, 'Latest near-field observations of a track that vote on its '
                             'class', min_value=1, max_value=1000)
    near_min_votes: int = param(3, 'Near-field observations needed before the vote counts (at '
                                'most near_window)', min_value=1, max_value=1000)
    near_min_agreement: float = param(0.6, 'Share of the near-field votes the winning class '
                                      'needs', min_value=0.0, max_value=1.0)
    relabel_min_confidence: float = param(0.5, 'Smallest confidence (winning share x mean score '
                                          'of its votes x share of well matched observations) '
                                          'for a relabel',
                                          min_value=0.0, max_value=1.0)
    relabel_min_observations: int = param(5, 'Observations a track needs before it can relabel '
                                          '(h in the paper)', min_value=1, max_value=100000)
    relabel_history_size: int = param(300, 'Observations kept per track (older ones cannot be '
                                      'relabelled any more)', min_value=1, max_value=100000)
    relabel_near_field: bool = param(False, 'Also relabel near-field observations that disagree '
                                     'with the vote (off: only far observations are corrected; '
                                     'near ones are the evidence)')
    segment_min_iou: float = param(0.5, "Association IoU (padded, against the track's "
                                   'prediction) below which the track is taken to have jumped to '
                                   'another object: its earlier observations are dropped and '
                                   'never relabelled by later votes (0 = off)',
                                   min_value=0.0, max_value=1.0)
    segment_max_gap_s: float = param(0.5, 'Seconds without an observation after which a track '
                                     'that is found again is taken to be another object, as '
                                     'for segment_min_iou: a track coasting far away is often '
                                     're-found on a neighbour (0 = off)',
                                     min_value=0.0, max_value=1e6)
    relabel_min_match_iou: float = param(0.5, 'Association IoU an observation needs to be '
                                         'relabelled: a detection that never matched its track '
                                         'well may be another object; the share of well matched '
                                         'observations also scales the confidence (0 = off)',
                                         min_value=0.0, max_value=1.0)
    relabel_max_score: float = param(0.8, 'Detection score from which an observation keeps its '
                                     'own class: a far detection the detector is this sure of is '
                                     'more often right (or another object) than the vote '
                                     '(1 = off; docs/measurements/tracking_relabel.md, session 13)',
                                     min_value=0.0, max_value=1.0)
    relabel_max_span_s: float = param(10.0, 'Seconds before the vote from which observations are '
                                      'relabelled: a track that lingered far away longer has '
                                      'likely followed other objects there (an approach from 60 '
                                      'm to the near field takes a few seconds)',
                                      min_value=0.0, max_value=1e6)

    def _check_together(self) -> None:
        if self.near_min_votes > self.near_window:
            raise ParameterError(f'parameter near_min_votes ({self.near_min_votes}) cannot exceed '
                                 f'near_window ({self.near_window})')
