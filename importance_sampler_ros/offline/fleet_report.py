"""The fleet report of `replay-fleet`: fleet_report.json and its plots, merged from the per-bag
outcomes (each bag's own report.json stays in its output directory).

Nothing here reads bags or needs Ray: the driver hands over plain dicts and arrays.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np

from importance_sampler_ros.offline.report import save_figure

FLEET_REPORT = 'fleet_report.json'
STATUS_OK = 'ok'
STATUS_TRUNCATED = 'truncated'
STATUS_FAILED = 'failed'
STATUS_COLOURS = {STATUS_OK: 'tab:blue', STATUS_TRUNCATED: 'tab:orange', STATUS_FAILED: '0.75'}


def fleet_totals(bags: Sequence[Mapping[str, Any]], importances: Sequence[np.ndarray],
                 keep_ratio: float | None, importance_mean: float) -> dict[str, Any]:
    """Counts over the fleet; `expected_keep_ratio` is sum(min(1, rho g / g_mean)) / N over every
    frame of the first pass, what the global budget aims at before relabel keeps and clipping
    noise (None without a fleet keep ratio)."""
    statuses = [b['status'] for b in bags]
    frames_in = sum(b.get('frames_in', 0) for b in bags)
    frames_kept = sum(b.get('frames_kept', 0) for b in bags)
    totals: dict[str, Any] = {
        'bags': len(bags),
        STATUS_OK: statuses.count(STATUS_OK),
        STATUS_TRUNCATED: statuses.count(STATUS_TRUNCATED),
        STATUS_FAILED: statuses.count(STATUS_FAILED),
        'skipped_complete': sum(bool(b.get('skipped')) for b in bags),
        'frames_in': frames_in,
        'frames_kept': frames_kept,
        'keep_ratio': frames_kept / frames_in if frames_in else 0.0,
        'frames_kept_by_relabel': sum(b.get('frames_kept_by_relabel', 0) for b in bags),
        'bytes_in': sum(b.get('bytes_in', 0) for b in bags),
        'bytes_kept': sum(b.get('bytes_kept', 0) for b in bags),
        'seconds_of_drive': sum(b.get('seconds_of_drive', 0.0) for b in bags),
        'expected_keep_ratio': None,
    }
    if keep_ratio is not None and importance_mean > 0.0 and importances:
        g = np.concatenate(importances)
        totals['expected_keep_ratio'] = float(
            np.minimum(1.0, keep_ratio * g / importance_mean).mean())
    return totals


def write_fleet_report(report: dict[str, Any], bags: Sequence[Mapping[str, Any]],
                       importances: Mapping[str, np.ndarray], directory: Path) -> Path:
    """Plots plus fleet_report.json (written last, atomically) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    report['plots'] = {
        'totals': str(_plot_totals(bags, directory / 'fleet_totals.png')),
        'keep_ratio': str(_plot_keep_ratio(
            bags, report.get('fleet_keep_ratio'), report.get('importance_mean_fleet', 0.0),
            directory / 'fleet_keep_ratio.png')),
        'importance': str(_plot_importance(
            importances, report.get('importance_mean_fleet', 0.0), report.get('fleet_keep_ratio'),
            directory / 'fleet_importance.png')),
    }
    path = directory / FLEET_REPORT
    write_json_atomically(path, report)
    return path


def write_json_atomically(path: Path, data: Any) -> None:
    """A reader sees the old file or the whole new one, never half of it."""
    scratch = path.with_name(f'.{path.name}.tmp')
    with open(scratch, 'w') as stream:
        stream.write(json.dumps(data, indent=2, default=_json_default) + '\n')
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(scratch, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f'not JSON serialisable: {type(value).__name__}')


def _bar_positions(bags: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, list[str]]:
    return np.arange(len(bags)), [b['name'] for b in bags]


def _label_bags(ax: plt.Axes, positions: np.ndarray, names: list[str]) -> None:
    ax.set_xticks(positions)
    ax.set_xticklabels(names, rotation=45 if len(names) > 4 else 0, ha='right' if len(
        names) > 4 else 'center', fontsize=7)


def _plot_totals(bags: Sequence[Mapping[str, Any]], path: Path) -> Path:
    positions, names = _bar_positions(bags)
    frames_in = np.array([b.get('frames_in', 0) for b in bags])
    kept = np.array([b.get('frames_kept', 0) for b in bags])
    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * len(bags) + 2), 3.4))
    ax.bar(positions, frames_in, color='0.85', label='frames in')
    ax.bar(positions, kept, color='tab:blue', label='frames kept')
    for x, bag in zip(positions, bags, strict=True):
        if bag['status'] != STATUS_OK:
            ax.text(x, 0, bag['status'], rotation=90, ha='center', va='bottom', fontsize=7,
                    color='tab:red')
    _label_bags(ax, positions, names)
    ax.set_ylabel('frames')
    total_in, total_kept = int(frames_in.sum()), int(kept.sum())
    ax.set_title(f'Fleet: {total_kept} of {total_in} frames kept in {len(bags)} bags')
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _plot_keep_ratio(bags: Sequence[Mapping[str, Any]], target: float | None,
                     fleet_mean: float, path: Path) -> Path:
    positions, names = _bar_positions(bags)
    ratios = [b.get('keep_ratio', 0.0) for b in bags]
    colours = [STATUS_COLOURS[b['status']] for b in bags]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * len(bags) + 2), 3.4))
    ax.bar(positions, ratios, color=colours)
    if target is not None:
        ax.axhline(target, color='0.3', lw=0.8, ls='--', label=f'fleet keep ratio {target:g}')
        ax.legend(fontsize=8)
    if fleet_mean > 0.0:
        for x, bag, ratio in zip(positions, bags, ratios, strict=True):
            if bag.get('importance_mean'):
                ax.text(x, ratio, f'{bag["importance_mean"] / fleet_mean:.2f}',
                        ha='center', va='bottom', fontsize=7)
    _label_bags(ax, positions, names)
    ax.set_ylabel('kept / in')
    ax.set_title('Keep ratio per bag', fontsize=10)
    if fleet_mean > 0.0:
        ax.set_xlabel('above each bar: mean importance of the bag / fleet mean', fontsize=8)
    return save_figure(fig, path)


def _plot_importance(importances: Mapping[str, np.ndarray], fleet_mean: float,
                     target: float | None, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.4))
    arrays = [a for a in importances.values() if len(a)]
    if arrays:
        values = np.concatenate(arrays)
        low, high = float(values.min()), float(values.max())
        bins = np.linspace(low, high if high > low else low + 1.0, 50)
        labels = list(importances) if len(arrays) <= 8 else None
        if labels:
            data = [importances[name] for name in labels]
            ax.hist(data, bins=bins, stacked=True, label=labels)
            ax.legend(fontsize=7)
        else:
            ax.hist(values, bins=bins, color='tab:blue')
        ax.set_yscale('log')
    if fleet_mean > 0.0:
        ax.axvline(fleet_mean, color='0.2', lw=0.8)
        ax.text(fleet_mean, ax.get_ylim()[1], ' fleet mean', va='top', fontsize=8)
        if target and arrays and fleet_mean / target <= max(a.max() for a in arrays):
            ax.axvline(fleet_mean / target, color='tab:red', lw=0.8, ls='--')
            ax.text(fleet_mean / target, ax.get_ylim()[1], ' q = 1', va='top', fontsize=8,
                    color='tab:red')
    ax.set_xlabel("frame importance g^a (a: the recorder's sharpness)")
    ax.set_ylabel('frames')
    ax.set_title('Frame importance across the fleet (first pass)')
    return save_figure(fig, path)
