"""``eexit check``: run the model adaptively and compare its mean latency with the prediction."""

from __future__ import annotations

import click

from eexit_cli.cli.common import (CONTEXT_SETTINGS, EXIT_CODES_HELP, ExitCode, get_state, global_options,
                                   output_option, print_verdict, progress)
from eexit_cli.cli.profile_cmd import _time, check_output_early, emit, model_files, model_options
from eexit_cli.core.latency import parse_fraction
from eexit_cli.core.replay import exit_indices
from eexit_cli.errors import InputError
from eexit_cli.io.agreement import check_exit_names
from eexit_cli.io.exits import read_exits
from eexit_cli.io.jsonfiles import read_latency, read_thresholds_or_frontier


@click.command("check", context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@click.argument("model")
@click.argument("thresholds", type=click.Path(dir_okay=False))
@click.argument("split", type=click.Path(dir_okay=False))
@output_option("Write the check JSON here ('-' = stdout). Default: stdout when it is not a terminal.")
@model_options
@click.option("--latency", "latency_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Predict from this latency profile instead of the one stored in THRESHOLDS.")
@click.option("--tolerance", "tolerance_text", default="10%", show_default=True, metavar="FRACTION",
              help="Largest accepted |predicted - measured| / measured (5% or 0.05).")
@click.option("--passes", type=click.IntRange(min=1), default=5, show_default=True,
              help="Timed passes over all samples of SPLIT (after one untimed pass).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the random inputs.")
@click.option("--allow-renamed-exits", is_flag=True,
              help="Accept files whose exit_names differ (exits are matched by position). Without it, a "
                   "split, thresholds file or profile naming other exits, or the same exits in another "
                   "order, stops the command.")
@global_options
def check(model, thresholds, split, output, outputs, input_shapes, mode, device, threads, latency_path,
          tolerance_text, passes, seed, allow_renamed_exits):
    """Check the predicted mean latency against a real adaptive run of MODEL.

    THRESHOLDS is a thresholds JSON from `eexit tune`; SPLIT an exit-outputs file
    (e.g. the test split). The thresholds are replayed on SPLIT to find the exit of
    every sample; then MODEL (as for `eexit profile`: an ONNX file or
    FILE.py:FACTORY) is run sample by sample with that schedule, stage after stage,
    computing each passed exit's confidence and comparing it with its threshold, as
    a deployment does. The measured mean latency per sample is set against the
    prediction sum_n p_n d_n made from the latency profile in THRESHOLDS (or
    --latency). Inputs are random tensors shaped like the model's input; the exit
    taken follows the schedule.

    Exit code 0 when |predicted - measured| / measured is within --tolerance, 1 when
    not; the one-line verdict (PASS or FAIL, with both figures) is printed on stderr
    even with --quiet. Run it on the machine the profile was made on, with nothing
    else running.

    \b
    Example:
      eexit profile model.onnx -o latency.json
      eexit tune val.h5 --latency latency.json --budget 50% -o thresholds.json
      eexit check model.onnx thresholds.json test.h5 --tolerance 5%
    """
    state = get_state()
    try:
        tolerance = parse_fraction(tolerance_text, "--tolerance")
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--tolerance") from None
    check_output_early(output, [*model_files(model), thresholds, split, *([latency_path] if latency_path else [])])
    fmt, sets, _raw = read_thresholds_or_frontier(thresholds)
    if fmt != "eexit.thresholds/v1":
        raise InputError(f"{thresholds}: a frontier holds several threshold sets; check one thresholds file "
                         "(tune with a single --budget)")
    ts = sets[0]
    latency = read_latency(latency_path) if latency_path else ts.latency
    where = latency_path or f"{thresholds} (latency)"
    if latency.n_exits != ts.n_exits:
        raise InputError(f"{where}: the latency profile has {latency.n_exits} exits, the thresholds are for "
                         f"{ts.n_exits} (N disagrees)")
    try:
        latency = latency.in_unit("s")
    except ValueError:
        raise InputError(f"{where}: the latency profile is in {latency.unit!r}, not a unit of time; a check "
                         "against measured time needs a profile from `eexit profile` (or in s, ms, us, ns)") from None
    data = read_exits(split, confidence=ts.confidence)
    if data.n_exits != ts.n_exits:
        raise InputError(f"{split}: has {data.n_exits} exits but {thresholds} holds thresholds for "
                         f"{ts.n_exits} exits (N disagrees)")
    check_exit_names([(str(split), data.exit_names if data.names_given else None),
                      (str(thresholds), ts.exit_names), (where, latency.exit_names)], allow_renamed_exits)
    schedule = exit_indices(data.scores, ts.thresholds)

    from eexit_cli.core.confidence import COMPUTED_MEASURES
    from eexit_cli.profiling.adaptive import check_adaptive
    from eexit_cli.profiling.models import open_model

    notes = []
    confidence = ts.confidence
    if confidence not in COMPUTED_MEASURES:
        # precomputed scores: the schedule still says where each sample leaves; the
        # check at each exit passed is timed with a measure of similar cost
        notes.append(f"the thresholds are on confidence {confidence!r}, which cannot be computed from an "
                     "exit's output; each exit passed is checked with max_softmax instead")
        confidence = "max_softmax"
    staged = open_model(model, outputs=outputs, input_shapes=input_shapes, mode=mode, device=device,
                        threads=threads, confidence=confidence, thresholds=ts.thresholds, seed=seed)
    if staged.n_exits != ts.n_exits:
        raise InputError(f"{model}: has {staged.n_exits} exits but {thresholds} holds thresholds for "
                         f"{ts.n_exits} exits (N disagrees)")
    measured_on = latency.extra.get("measurement") if isinstance(latency.extra.get("measurement"), dict) else {}
    profiled = measured_on.get("model") if isinstance(measured_on.get("model"), dict) else {}
    if profiled.get("sha256") and staged.source.get("sha256") and profiled["sha256"] != staged.source["sha256"]:
        notes.append(f"the latency profile was measured on another model file ({profiled.get('path')})")
    for key, here in (("mode", staged.mode), ("batch", staged.batch), ("threads", staged.threads),
                      ("device", staged.device)):
        if key in measured_on and measured_on[key] != here:
            notes.append(f"the latency profile was measured with {key} {measured_on[key]}, this run uses {here}")
    with progress("adaptive run", total=passes) as update:
        result = check_adaptive(staged, schedule, latency.per_exit, passes=passes, tolerance=tolerance,
                                progress=lambda done, total: update(done, total=total))
    report = result.to_dict(split=str(split), thresholds_file=str(thresholds),
                            latency_file=None if latency_path is None else str(latency_path), notes=notes)
    for note in notes:
        state.err.print(f"[yellow]warning[/]: {note}", highlight=False)
    emit(report, output)
    print_verdict(
        state, result.passed,
        f"{'PASS' if result.passed else 'FAIL'}: measured mean {_time(result.measured_mean)} per sample over "
        f"{result.n_samples} samples x {passes} passes; predicted {_time(result.predicted_mean)}; error "
        f"{100 * result.relative_error:+.1f}% (tolerance {100 * tolerance:.1f}%)",
    )
    if not result.passed:
        click.get_current_context().exit(ExitCode.GATE_FAILED)
