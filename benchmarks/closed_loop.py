"""The closed loop as a benchmark: run `importance-sampler closed-loop`, then print (and optionally
write) a Markdown report of its JSON: the retrained models' test mAP by strategy, the gain over
random with its spread, per situation tag and distance bin, and the scorer table.

Usage:
    python benchmarks/closed_loop.py --out out/closed_loop [--markdown docs/measurements/X.md]
        [any further closed-loop options, e.g. --quick, --device cuda, --budgets 0.02 0.05]
    python benchmarks/closed_loop.py --from-json out/closed_loop/closed_loop.json --markdown X.md
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _pm(cell: dict[str, float], scale: float = 100.0) -> str:
    if not cell or cell.get('n', 0) == 0:
        return 'n/a'
    return f"{scale * cell['mean']:+.2f} ± {scale * cell['std']:.2f}"


def markdown(result: dict[str, Any], wall_note: str = '') -> str:
    from importance_sampler_ros.closed_loop.experiment import format_gain

    settings = result['settings']
    lines = [
        '# Closed loop: retraining on the kept frames vs on as many random frames', '',
        f"Command: `{result.get('command', 'importance-sampler closed-loop')}`", '',
        f"Machine: {platform.machine()}, {wall_note}wall time {result['wall_s']:.0f} s. "
        f"Model retrained: `{result['model']}` (from {settings.get('retrain_from', 'fc7')} up to "
        f"cls_score and bbox_pred; "
        f"{settings['finetune']['iterations']} iterations, batch "
        f"{settings['finetune']['batch_size']}, replay share "
        f"{settings['finetune']['replay_share']}, {settings['replay_frames']} replay frames).",
        '',
        f"Pool: {result['pool']['frames']} frames from drives {result['pool']['drives']} "
        f"({result['pool']['errors_per_frame']:.1f} detector errors on labelled objects per "
        f"frame). Test: {result['test']['frames']} frames. Base model test mAP@0.5 "
        f"{result['base_model']['mAP']:.3f}. Seeds {settings['seeds']}.", '',
    ]
    for budget, table in result['summary'].items():
        tags = sorted(next(iter(table.values()))['by_tag'])
        lines += [f'## Budget {float(budget):.1%} of the pool', '',
                  'Test mAP@0.5 after retraining (mean ± sd over seeds); gain over random in '
                  'mAP points, paired by seed: overall as mean ± standard error and the seeds '
                  'in which it beat random, per tag mean ± sd; "err ×": detector errors on '
                  'labelled objects (box height >= 20 px, evaluation/errors.py) per '
                  'selected frame / per pool frame; "rare": share of the selected frames in a '
                  f"rare situation (pool {result['pool'].get('rare_share', float('nan')):.2f}).",
                  '',
                  '| strategy | frames | err × | rare | mAP | gain overall | '
                  + ' | '.join(f'gain {t}' for t in tags) + ' |',
                  '|---' * (6 + len(tags)) + '|']
        for strategy, row in table.items():
            lines.append(
                f"| {strategy} | {row['frames']['mean']:.0f} | "
                f"{row['selected_error_enrichment']['mean']:.2f} | "
                f"{row.get('selected_rare_share', {}).get('mean', float('nan')):.2f} | "
                f"{row['mAP']['mean']:.3f} ± {row['mAP']['std']:.3f} | "
                f"{format_gain(row['gain_over_random'], '±')} | "
                + ' | '.join(_pm(row['by_tag'][t]['gain_over_random']) for t in tags) + ' |')
        bins = list(next(iter(table.values()))['by_distance'])
        lines += ['', 'Gain over random by distance bin (mAP points):', '',
                  '| strategy | ' + ' | '.join(bins) + ' |', '|---' * (1 + len(bins)) + '|']
        for strategy, row in table.items():
            lines.append(f'| {strategy} | '
                         + ' | '.join(_pm(row['by_distance'][b]['gain_over_random'])
                                      for b in bins) + ' |')
        lines.append('')
    if result.get('self_labels'):
        lines += ['## Self-labels (detections + near-to-far relabels, no ground truth)', '']
        for budget, info in result['self_labels'].items():
            before, after = info['before_relabels'], info['after_relabels']
            lines.append(
                f"Budget {float(budget):.1%}: {info['relabel_events']} relabel events; on the "
                f"sampler's kept frames, label precision {before['precision']:.3f} -> "
                f"{after['precision']:.3f}, class accuracy {before['class_accuracy']:.3f} -> "
                f"{after['class_accuracy']:.3f}, recall {after['recall']:.3f}.")
        lines.append('')
    lines += ['## Frame scores on the pool (selection-metrics.md definitions)', '',
              'Errors are counted on labelled objects (box height >= 20 px, '
              'evaluation/errors.py); "boxes >=": the shortest detection that counts toward '
              'the frame score (0 = all); sampler enrichment at a = 1. Rare AUROC: how well '
              'the frame score ranks the frames of rare situations above the others (0.5 = not '
              'at all, below 0.5 = it keeps them less often than a coin).',
              '', '| scorer | aggregation | candidates | boxes >= | Spearman | enrichment top 10 % '
              '| missed | wrong class | sampler enrichment | CV | rare AUROC |', '|---' * 11 + '|']
    for row in result['scoring']:
        def f(key: str, row=row) -> str:
            value = row.get(key)
            return '' if value is None else f'{value:.2f}'
        lines.append(f"| {row['scorer']} | {row['aggregation']} | {row['candidates']} | "
                     f"{row.get('min_box_height', '')} | {f('spearman')} | {f('enrichment')} | "
                     f"{f('missed_enrichment')} | "
                     f"{f('wrong_class_enrichment')} | {f('sampler_enrichment')} | {f('cv')} | "
                     f"{f('rare_auroc')} |")
    return '\n'.join(lines) + '\n'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--from-json', type=Path, default=None,
                        help='report an existing closed_loop.json instead of running')
    parser.add_argument('--markdown', type=Path, default=None, help='also write the report here')
    parser.add_argument('--note', default='', help='what else ran on the machine, for the report')
    args, rest = parser.parse_known_args()
    if args.from_json is None:
        from importance_sampler_ros.cli import main as cli

        if '--out' not in rest:
            rest += ['--out', 'out/closed_loop']
        code = cli(['closed-loop', *rest])
        if code:
            return code
        args.from_json = Path(rest[rest.index('--out') + 1]) / 'closed_loop.json'
    result = json.loads(args.from_json.read_text())
    text = markdown(result, f'{args.note}; ' if args.note else '')
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
