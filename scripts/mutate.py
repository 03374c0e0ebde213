"""Mutation check: do the fast tests fail when the behaviour they guard breaks?

Each mutation is a realistic one-line breakage: (file, exact old text, new text), where the old
text must occur exactly once in the file (a refactor that moves it makes this script fail loudly
instead of silently testing nothing). Each is applied to a scratch copy of the working tree
(tracked and untracked-not-ignored files), the named fast tests run there, and a table says
whether any test failed (caught) and how long it took. Ray is never started: every named test
is a fast one (`-m "not slow"`).

    python scripts/mutate.py            # every mutation
    python scripts/mutate.py knn_k1     # only those named
    python scripts/mutate.py --list

Exit status 1 when a mutation is not caught (or its old text is not found exactly once).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


M = Mutation
WRITE = "tests/sweeper/report/test_report_write.py"
CLAIMS = "tests/sweeper/report/test_report_claims.py"
TRAINER = "tests/s3l_core/test_trainer.py"
RUNNER = "tests/sweeper/tune/test_runner.py"
IDENTITY = "tests/sweeper/store/test_trial_identity.py"
FIGURES = "tests/sweeper/report/test_report_figures.py"
INTERRUPTS = "tests/sweeper/test_interrupts.py"
CORRUPT_NOTE = "test_a_corrupt_checkpoint_restart_is_a_banner_and_a_note_in_the_trials_table"
MUTATIONS: tuple[Mutation, ...] = (
    # ------------------------------------------------------------- the table
    M("simclr_view1_twice", "s3l_core/methods.py",
      "z1, z2 = self.projector(self.encoder(torch.cat([view1, view2]))).chunk(2)",
      "z1, z2 = self.projector(self.encoder(torch.cat([view1, view1]))).chunk(2)",
      ("tests/s3l_core/test_methods.py",)),
    M("knn_k1", "s3l_core/evaluate.py",
      "k = min(k, len(train_features))",
      "k = 1",
      ("tests/s3l_core/test_evaluate.py",)),
    M("checkpoint_plain_torch_save", "s3l_core/checkpoint.py",
      "    with atomic_file(path) as handle:\n        torch.save({\"format_version\": FORMAT_VERSION, **state}, handle)",
      "    if True:\n        torch.save({\"format_version\": FORMAT_VERSION, **state}, path)",
      ("tests/s3l_core/test_checkpoint.py",)),
    M("finished_ids_counts_every_status", "sweeper/store/local.py",
      'if r.get("status") == "finished"}',
      'if r.get("status") in TRIAL_STATUSES}',
      ("tests/sweeper/store/test_store.py", "tests/sweeper/tune/test_runner.py")),
    M("trial_reuses_any_recorded_status", "sweeper/tune/trainable.py",
      'if done is not None and done.get("status") == "finished":',
      "if done is not None:",
      ("tests/sweeper/tune/test_trainable.py",)),
    M("html_attribute_quote_false", "sweeper/report/page.py",
      "html.escape(\"\" if value is None else str(value), quote=True)",
      "html.escape(\"\" if value is None else str(value), quote=False)",
      (f"{WRITE}::test_an_attribute_injection_payload_stays_inside_its_attribute",)),
    M("corrupt_checkpoint_banner_removed", "sweeper/report/build.py",
      'restarted = int(df["resumed_from_corrupt"].sum()) if len(df) else 0',
      "restarted = 0",
      (f"{WRITE}::{CORRUPT_NOTE}",)),
    M("corrupt_checkpoint_note_removed", "sweeper/report/build.py",
      'view["note"] = np.where(view["resumed_from_corrupt"], "restarted: corrupt checkpoint", "")',
      'view["note"] = ""',
      (f"{WRITE}::{CORRUPT_NOTE}",)),
    M("resume_ignores_earlier_runs_checkpoints", "sweeper/tune/trainable.py",
      "yield from store.checkpoint_copies(tid)",
      "pass",
      ("tests/sweeper/tune/test_trainable.py",)),
    M("resume_from_the_oldest_checkpoint", "sweeper/store/local.py",
      "return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)",
      "return sorted(found, key=lambda p: p.stat().st_mtime)",
      ("tests/sweeper/tune/test_trainable.py",)),
    M("finished_trials_never_reused", "sweeper/study/plan.py",
      "    return [(tid, p) for tid, p in trials.items() if tid not in finished_ids]",
      "    return list(trials.items())",
      ("tests/sweeper/tune/test_runner.py",)),
    # ------------------------------------------------------------- losses
    M("info_nce_ignores_temperature", "s3l_core/losses.py",
      "logits = F.normalize(query, dim=1) @ F.normalize(key, dim=1).T / temperature",
      "logits = F.normalize(query, dim=1) @ F.normalize(key, dim=1).T",
      ("tests/s3l_core/test_losses.py",)),
    M("byol_gradient_into_target", "s3l_core/losses.py",
      "F.cosine_similarity(prediction, target.detach(), dim=1)",
      "F.cosine_similarity(prediction, target, dim=1)",
      ("tests/s3l_core/test_losses.py",)),
    M("moco_queue_not_normalised", "s3l_core/losses.py",
      "negative = q @ F.normalize(queue.detach(), dim=1).T",
      "negative = q @ queue.detach().T",
      ("tests/s3l_core/test_losses.py",)),
    # ------------------------------------------------------------- methods
    M("moco_keys_left_shuffled", "s3l_core/methods.py",
      "return keys[torch.argsort(shuffle)]",
      "return keys",
      ("tests/s3l_core/test_methods.py",)),
    M("moco_queue_never_updated", "s3l_core/methods.py",
      "        self._enqueue(torch.cat([k1, k2]))\n",
      "",
      ("tests/s3l_core/test_methods.py",)),
    M("ema_momentum_inverted", "s3l_core/methods.py",
      "list(online.parameters()), 1.0 - momentum)",
      "list(online.parameters()), momentum)",
      ("tests/s3l_core/test_methods.py",)),
    M("simsiam_positives_not_crossed", "s3l_core/methods.py",
      "return (simsiam_loss(p1, z2) + simsiam_loss(p2, z1)) / 2",
      "return (simsiam_loss(p1, z1) + simsiam_loss(p2, z2)) / 2",
      ("tests/s3l_core/test_methods.py",)),
    # ------------------------------------------------------------- views
    M("both_views_same_augmentation", "s3l_core/views.py",
      "second = _augment(x, resolution, preset, 1, generator)",
      "second = first.clone()",
      ("tests/s3l_core/test_views.py",)),
    M("views_not_normalised", "s3l_core/views.py",
      "return (x - mean.to(x).view(shape)) / std.to(x).view(shape)",
      "return x",
      ("tests/s3l_core/test_views.py",)),
    # ------------------------------------------------------------- evaluation
    M("knn_votes_unweighted", "s3l_core/evaluate.py",
      "weights = (top_sims / temperature).exp()",
      "weights = torch.ones_like(top_sims)",
      ("tests/s3l_core/test_evaluate.py",)),
    M("features_not_normalised", "s3l_core/evaluate.py",
      "return F.normalize(torch.cat(chunks), dim=1)",
      "return torch.cat(chunks)",
      ("tests/s3l_core/test_evaluate.py",)),
    M("test_number_reaches_ray", "sweeper/tune/trainable.py",
      'keys = ("knn_val_top1", "knn_top1_best",',
      'keys = ("knn_top1", "knn_top1_best",',
      ("tests/sweeper/tune/test_trainable.py",)),
    # ------------------------------------------------------------- store and atomic writes
    M("write_without_fsync", "s3l_core/atomic.py",
      "            os.fsync(handle.fileno())\n",
      "",
      ("tests/s3l_core/test_atomic.py", "tests/sweeper/store/test_store.py")),
    M("damaged_digest_ignored", "s3l_core/checkpoint.py",
      "    if actual != expected:\n",
      "    if False:\n",
      ("tests/s3l_core/test_checkpoint.py",)),
    M("wrong_shaped_record_used", "sweeper/store/local.py",
      "        return None  # like a damaged record: the trial runs again",
      "        return record",
      ("tests/sweeper/store/test_store.py",)),
    M("record_metrics_types_unchecked", "sweeper/store/record.py",
      "_fields_problem(record) or _metrics_problem(record) or _epochs_problem(record)",
      "_fields_problem(record) or _epochs_problem(record)",
      ("tests/sweeper/store/test_record.py",)),
    M("record_config_may_lack_resolution", "sweeper/store/record.py",
      "    return f\"config.{missing[0]} is missing\" if missing else None",
      "    return None",
      ("tests/sweeper/store/test_record.py",)),
    M("foreign_folder_used_as_store", "sweeper/store/claim.py",
      "    problem = identity_problem(store, study_name)\n    if problem:\n        raise StoreError(problem)",
      "    problem = None",
      ("tests/sweeper/store/test_store.py",)),
    M("old_store_not_adopted", "sweeper/store/local.py",
      "        return None  # written before stores carried a marker: adopted",
      "        return f\"{where} has no marker\"",
      ("tests/sweeper/store/test_store.py",)),
    M("partial_store_not_flagged", "sweeper/report/build.py",
      "    plan = members.plan if members.note is None else None",
      "    plan = None",
      ("tests/sweeper/report/test_report_write.py",)),
    M("interrupted_trials_counted_as_not_started", "sweeper/report/membership.py",
      "        started = self.started - recorded",
      "        started = frozenset()",
      ("tests/sweeper/report/test_report_write.py",)),
    M("trial_id_hashes_the_device", "sweeper/store/trial_identity.py",
      'UNHASHED_KEYS = ("device", "data_dir", "download", "compile")',
      'UNHASHED_KEYS = ("data_dir", "download", "compile")',
      ("tests/sweeper/store/test_store.py", "tests/sweeper/store/test_trial_identity.py")),
    M("new_field_at_its_default_changes_ids", "sweeper/store/trial_identity.py",
      "        if path not in ID_FIELDS_V1 and name in _defaults(config_type)",
      "        if False and name in _defaults(config_type)",
      ("tests/sweeper/store/test_trial_identity.py",)),
    M("trial_id_ignores_nested_settings", "sweeper/store/trial_identity.py",
      "        out[name] = identity_of(value, nested, path + \".\") if nested is not None and isinstance(value, dict) else value",
      "        out[name] = {} if nested is not None and isinstance(value, dict) else value",
      ("tests/sweeper/store/test_trial_identity.py",)),
    M("record_write_not_atomic", "sweeper/store/local.py",
      "    write_atomic(path, json_text(value))",
      "    path.parent.mkdir(parents=True, exist_ok=True)\n    path.write_text(json_text(value))",
      ("tests/sweeper/store/test_store.py",)),
    # ------------------------------------------------------------- issue 25: secrets, start failures, bounds, locations, nodes
    M("tune_copies_aws_credentials", "sweeper/tune/cluster.py",
      "    keep_credentials_from_ray()\n    if ray.is_initialized():",
      "    if ray.is_initialized():",
      ("tests/sweeper/tune/test_credentials.py",)),
    M("embedded_start_failure_as_traceback", "sweeper/tune/cluster.py",
      "            raise ClusterError(embedded_start_failure(exc)) from None",
      "            raise",
      ("tests/sweeper/tune/test_connect.py",)),
    M("epochs_unbounded", "s3l_core/config.py",
      'need(c.epochs is None or c.epochs <= MAX_EPOCHS, "epochs"',
      'need(True, "epochs"',
      ("tests/sweeper/study/test_study.py::test_malformed_study_is_refused_with_file_line_and_path[epochs_over_limit]",)),
    M("cost_ceiling_ignored", "sweeper/study/cost_checks.py",
      "    if cost.total_pflops <= ceiling:",
      "    if True:",
      ("tests/sweeper/estimate/test_estimate.py::test_a_trial_above_the_cost_ceiling_is_refused_by_estimate_and_run_with_its_figure",)),
    M("whole_document_quoted", "sweeper/study/yaml_reader.py",
      'return f"a single value (text, {len(value):,} characters)"',
      'return f"a single value ({value!r})"',
      ("tests/sweeper/study/test_study.py::test_no_error_line_quotes_file_contents_beyond_the_value_at_fault",)),
    M("report_inside_storage_accepted", "sweeper/study/load.py",
      "    check_locations(c, storage, report)\n",
      "",
      ("tests/sweeper/study/test_study.py::test_malformed_study_is_refused_with_file_line_and_path[report_inside_storage]",)),
    M("nodes_counted_by_ray_node_id", "sweeper/tune/runner.py",
      '"node"].str.split(":").str[0].nunique()',
      '"node"].nunique()',
      ("tests/sweeper/tune/test_runner.py::test_the_summary_counts_the_hosts_finished_trials_ran_on_not_ray_node_ids",)),
    # ------------------------------------------------------------- report
    M("pareto_front_keeps_dominated_points", "sweeper/report/pareto.py",
      "gt = (points[None, :, :] > block).any(axis=2)",
      "gt = (points[None, :, :] > block).all(axis=2)",
      ("tests/sweeper/report/test_report_pareto.py",)),
    M("file_set_forgets_stale_files", "s3l_core/atomic.py",
      "    for name in before - set(files):\n        (folder / name).unlink(missing_ok=True)",
      "    for name in ():\n        (folder / name).unlink(missing_ok=True)",
      ("tests/s3l_core/test_atomic.py", f"{WRITE}::test_stale_figures_are_removed_and_rewrite_is_clean")),
    M("shell_command_line", "sweeper/tune/provenance.py",
      'subprocess.run(["git", *args],',
      'subprocess.run(["sh", "-c", " ".join(["git", *args])],',
      ("tests/sweeper/test_project_files.py::test_no_study_value_reaches_a_shell",)),
    M("report_write_not_atomic", "s3l_core/atomic.py",
      "        write_atomic(folder / name, data)\n",
      "        (folder / name).write_bytes(data)\n",
      (f"{WRITE}::test_a_report_that_fails_to_sync_or_rename_keeps_the_old_report",)),
    # ------------------------------------------------------------- issue 24: protocol floors, schedules, selection
    M("every_objective_gated_by_knn_floors", "sweeper/report/verdict.py",
      "    f = floors_of(accuracy)\n",
      "    f = floors_of(\"knn_top1\")\n",
      (f"{CLAIMS}::test_each_objective_is_gated_by_the_floors_of_its_own_protocol",)),
    M("finetune_floor_is_the_pixel_probe", "s3l_core/protocol.py",
      "            finetune_random = tuned.top1\n",
      "            finetune_random = dict(linear_pixels)\n",
      ("tests/s3l_core/test_trainer.py::test_each_protocol_has_its_own_floors_on_validation_and_test",)),
    M("cheapest_on_test_means", "sweeper/report/claims.py",
      "        if classify(diff) == HOLDS:\n            return row",
      "        if row[\"accuracy\"] >= best[\"accuracy\"] - 0.01:\n            return row",
      (f"{CLAIMS}::test_headline_cheapest_within_a_point_ties_and_no_finished_trials",)),
    M("schedule_length_ignored_in_pairing", "sweeper/report/compare.py",
      '    return arm.get("run_unit") == ref.get("run_unit") and a == b',
      "    return True",
      (f"{CLAIMS}::test_a_schedule_is_paired_at_equal_total_epochs_and_its_label_is_true_of_both_arms",)),
    M("schedule_fitted_as_full_size", "sweeper/report/compare.py",
      "    schedules, done = (done[is_schedule(done)], done[~is_schedule(done)]) if len(done) else (done, done)",
      "    schedules = done.iloc[0:0]",
      (f"{CLAIMS}::test_trend_fits_leave_schedules_out_of_the_resolution_axis",)),
    M("curves_draw_stale_trials", "sweeper/report/build.py",
      '    have = set(epochs["trial_id"].unique()) & set(df["trial_id"])',
      '    have = set(epochs["trial_id"].unique())',
      ("tests/sweeper/report/test_report_figures.py",)),
    M("curves_draw_test_floors", "sweeper/report/build.py",
      '    split_floors = (knn.val_pixels, knn.val_random) if accuracy == "knn_val_top1" else (knn.pixels, knn.random)',
      "    split_floors = (knn.pixels, knn.random)",
      ("tests/sweeper/report/test_report_figures.py",)),
    # ------------------------------------------------------------- issue 28: equivalence of a resumed trial
    M("resume_drops_optimiser_state", "s3l_core/trainer.py",
      '        optimiser.load_state_dict(state["optimizer"])\n',
      "        pass\n",
      (f"{TRAINER}::test_a_resumed_trial_is_bit_identical_to_an_uninterrupted_one",)),
    M("resume_drops_view_generator", "s3l_core/trainer.py",
      '        view_rng.set_state(state["view_rng"])\n',
      "        pass\n",
      (f"{TRAINER}::test_a_resumed_trial_is_bit_identical_to_an_uninterrupted_one",)),
    # ------------------------------------------------------------- issue 28: absolute counts, what Ray and Optuna are told
    M("forward_flops_counted_as_macs", "s3l_core/cost.py",
      "        encoder(x)\n    return float(counter.get_total_flops())",
      "        encoder(x)\n    return float(counter.get_total_flops()) / 2",
      ("tests/s3l_core/test_cost.py",)),
    M("asha_on_the_test_number", "sweeper/tune/runner.py",
      "        time_attr=\"epoch\", metric=selection_metric(objective), mode=study.objectives[objective],",
      "        time_attr=\"epoch\", metric=objective, mode=study.objectives[objective],",
      (f"{RUNNER}::test_the_scheduler_and_the_searchers_optimise_validation_numbers_in_the_studys_direction",)),
    M("nsga_optimises_the_first_objective_only", "sweeper/tune/runner.py",
      "        metric=metrics if len(metrics) > 1 else metrics[0],",
      "        metric=metrics[0],",
      (f"{RUNNER}::test_the_scheduler_and_the_searchers_optimise_validation_numbers_in_the_studys_direction",)),
    M("searcher_mode_flipped", "sweeper/tune/runner.py",
      "        mode=modes if len(modes) > 1 else modes[0],",
      "        mode=[{\"max\": \"min\", \"min\": \"max\"}[m] for m in modes] if len(modes) > 1 else modes[0],",
      (f"{RUNNER}::test_the_scheduler_and_the_searchers_optimise_validation_numbers_in_the_studys_direction",)),
    # ------------------------------------------------------------- issue 28: augmentation by operation
    M("views_share_their_geometry", "s3l_core/views.py",
      "    out = _resized_crop(x, resolution, preset, u)\n",
      "    out = _resized_crop(x, resolution, preset, torch.rand(x.shape[0], _DRAWS, generator=torch.Generator(device=x.device).manual_seed(0), device=x.device))\n",
      ("tests/s3l_core/test_views.py",)),
    M("flip_by_image_not_by_view", "s3l_core/views.py",
      "    mirror = torch.where(u[:, _FLIP] < preset.flip, -1.0, 1.0)",
      "    mirror = torch.where((torch.arange(n, device=u.device) % 2 == 0) & (preset.flip > 0), -1.0, 1.0)",
      ("tests/s3l_core/test_views.py",)),
    # ------------------------------------------------------------- issue 28: identity over every knob
    M("optional_nested_class_hashed_whole", "sweeper/store/trial_identity.py",
      "    for option in typing.get_args(hint) or (hint,):",
      "    for option in (hint,):",
      (f"{IDENTITY}::test_a_new_field_at_its_default_in_any_class_keeps_the_id_and_away_from_it_changes_it",)),
    M("image_size_left_out_of_ids", "sweeper/store/trial_identity.py",
      'UNHASHED_KEYS = ("device", "data_dir", "download", "compile")',
      'UNHASHED_KEYS = ("device", "data_dir", "download", "compile", "image_size")',
      (f"{IDENTITY}::test_an_imagefolders_cache_size_is_a_knob",)),
    M("plan_hashes_the_unresolved_point", "sweeper/study/plan.py",
      "    return trial_id(study.trial_config(point).to_dict())",
      "    return trial_id({**study.base_trial, **point})",
      (f"{IDENTITY}::test_each_knob_changed_alone_to_a_valid_value_is_a_new_trial_by_both_id_functions",)),
    M("stage_list_hashed_by_length", "sweeper/store/trial_identity.py",
      "        out[name] = identity_of(value, nested, path + \".\") if nested is not None and isinstance(value, dict) else value",
      "        out[name] = identity_of(value, nested, path + \".\") if nested is not None and isinstance(value, dict) else (len(value) if isinstance(value, list) else value)",
      (f"{IDENTITY}::test_each_knob_changed_alone_to_a_valid_value_is_a_new_trial_by_both_id_functions",)),
    # ------------------------------------------------------------- issue 28: what the figures draw
    M("pareto_figure_cost_maximised", "sweeper/report/figures.py",
      '            front = pareto_mask(configs, {"accuracy": "max", "cost": "min"}).to_numpy()',
      '            front = pareto_mask(configs, {"accuracy": "max", "cost": "max"}).to_numpy()',
      (f"{FIGURES}::test_the_pareto_front_drawn_is_the_front_of_the_table",)),
    M("pareto_step_through_every_configuration", "sweeper/report/figures.py",
      '            ax.step(fx, fy, where="post", color="black", linewidth=1.1, zorder=3)',
      '            ax.step(np.sort(x), y[np.argsort(x)], where="post", color="black", linewidth=1.1, zorder=3)',
      (f"{FIGURES}::test_the_pareto_front_drawn_is_the_front_of_the_table",)),
    M("front_table_by_single_trials", "sweeper/report/build.py",
      '        means = numeric.groupby([done[k] for k in keys], dropna=False, sort=False).transform("mean")',
      "        means = numeric",
      (f"{FIGURES}::test_the_pareto_front_drawn_is_the_front_of_the_table",)),
    M("pareto_floor_band_at_the_mean", "sweeper/report/figures.py",
      "        lo, hi = float(values.min()), float(values.max())",
      "        lo = hi = float(values.mean())",
      (f"{FIGURES}::test_the_pareto_figures_floor_band_spans_the_tables_floors_across_architectures",)),
    M("knob_floors_one_for_every_setting", "sweeper/report/figures.py",
      '                    per_value = pd.to_numeric(rows[floor], errors="coerce").groupby(rows[knob]).mean().reindex(order)',
      '                    per_value = pd.Series(pd.to_numeric(rows[floor], errors="coerce").mean(), index=order)',
      (f"{FIGURES}::test_the_knob_figure_draws_each_architectures_floors_from_the_table",)),
    # ------------------------------------------------------------- issue 28: one Ctrl-C ends the suite, nothing outlives it
    M("swallowed_signals_let_the_run_go_on", "tests/interrupts.py",
      "        if seen:\n",
      "        if False:\n",
      (f"{INTERRUPTS}::test_one_signal_ends_the_run_and_its_server_whoever_takes_it",)),
    M("sigterm_left_at_its_default", "tests/interrupts.py",
      "    signal.signal(signal.SIGTERM, _raise_interrupt)\n",
      "",
      (f"{INTERRUPTS}::test_one_signal_ends_the_run_and_its_server_whoever_takes_it",)),
    M("no_reaper_for_the_run", "tests/interrupts.py",
      '    _reaper = start_reaper(f"{SESSION_VARIABLE}={os.environ[SESSION_VARIABLE]}")',
      "    _reaper = None",
      (f"{INTERRUPTS}::test_a_sigkilled_run_leaves_no_server_and_no_detached_process",)),
    M("reaper_reads_command_lines_only", "tests/processes.py",
      '        return marker in " ".join(p.cmdline()) or any(marker in f"{k}={v}" for k, v in p.environ().items())',
      '        return marker in " ".join(p.cmdline())',
      (f"{INTERRUPTS}::test_a_sigkilled_run_leaves_no_server_and_no_detached_process",)),
    # ------------------------------------------------------------- twelfth session (issues 24, 26, 27)
    M("schedule_read_from_label", "sweeper/report/snapshot.py",
      "    if set(STAGE_COLUMNS) <= set(df.columns):",
      "    if False:",
      ("tests/sweeper/store/test_results.py::test_a_schedule_in_steps_makes_its_tables_and_its_wording",)),
    M("every_point_in_each_trials_config", "sweeper/tune/point_queue.py",
      '        return {STORE_ID_KEY: store_id, "point": dict(point)}',
      '        return {STORE_ID_KEY: store_id, "point": dict(point), "points": [p for _, p in self._pending]}',
      (f"{RUNNER}::test_ray_is_handed_one_small_point_per_trial_whatever_the_study_size",)),
    M("queue_saves_every_point", "sweeper/tune/point_queue.py",
      '            json.dump({"next": self._next}, f)',
      '            json.dump({"next": self._next, "pending": self._pending}, f)',
      (f"{RUNNER}::test_ray_is_handed_one_small_point_per_trial_whatever_the_study_size",)),
    M("tune_keeps_one_checkpoint_itself", "sweeper/tune/runner.py",
      "            checkpoint_config=tune.CheckpointConfig(),",
      "            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),",
      (f"{RUNNER}::test_ray_is_not_asked_to_snapshot_the_experiment_at_every_trial_checkpoint",)),
    M("trials_named_by_a_closure", "sweeper/tune/runner.py",
      "if sampled else store_trial_name  # noqa: E731",
      "if True else store_trial_name  # noqa: E731",
      (f"{RUNNER}::test_ray_is_not_asked_to_snapshot_the_experiment_at_every_trial_checkpoint",)),
    M("noop_ignores_newer_records", "sweeper/store/run_summary.py",
      "        if any(path.stat().st_mtime < newest for path in outputs):",
      "        if False:",
      ("tests/sweeper/test_cli_startup.py::test_a_store_with_anything_new_takes_the_full_run",)),
    M("noop_ignores_a_changed_study", "sweeper/store/run_summary.py",
      '        if (root / "study.yaml").read_text() != study.resolved_yaml():',
      "        if False:",
      ("tests/sweeper/test_cli_startup.py::test_a_store_with_anything_new_takes_the_full_run",)),
    M("view_scans_trials_every_step", "sweeper/tune/study_view.py",
      "        if done or now - self._last_look >= LOOK_EVERY_S:",
      "        if True:",
      ("tests/sweeper/tune/test_study_view.py::test_trials_are_looked_at_twice_a_second_at_most_and_always_at_the_end",)),
    M("view_prints_nan", "sweeper/tune/study_view.py",
      '    return f"{100 * v:.1f}%" if math.isfinite(v) else None',
      '    return f"{100 * v:.1f}%"',
      ("tests/sweeper/tune/test_study_view.py::test_off_a_terminal_each_trial_event_is_one_line_and_nothing_is_repeated",)),
    M("eta_paced_from_the_run_start", "sweeper/tune/live_view.py",
      "        self.began[trial_id] = self.clock()",
      "        pass",
      ("tests/sweeper/tune/test_live_view.py::test_a_trials_pace_counts_from_when_ray_started_it_not_from_the_run_start",)),
    M("legend_names_what_is_not_drawn", "sweeper/report/figures.py",
      'label="dominated configuration")] if any_dominated else []),',
      'label="dominated configuration")] if True else []),',
      ("tests/sweeper/report/test_report_legends.py::test_a_pareto_legend_lists_dominated_configurations_and_single_trials_only_when_drawn",)),
)


def scratch_copy(destination: Path) -> None:
    """Copy the working tree's tracked and untracked-not-ignored files (uncommitted edits included)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def apply(mutation: Mutation, root: Path) -> str:
    """Write the mutated file; return the original text. Raise unless the old text occurs once."""
    path = root / mutation.file
    original = path.read_text()
    count = original.count(mutation.old)
    if count != 1:
        raise SystemExit(f"mutation {mutation.name}: old text occurs {count} times in {mutation.file} (expected once); update the mutation")
    path.write_text(original.replace(mutation.old, mutation.new))
    return original


def run_tests(tests: tuple[str, ...], root: Path, timeout_s: float) -> tuple[bool, str]:
    """(whether a test failed, last lines of pytest's output), with `root` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-m", "not slow", "-p", "no:cacheprovider", *tests]
    try:
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return True, "timed out (counted as caught: the suite would not pass)"
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-3:])
    if done.returncode not in (0, 1):  # 2-5: collection or usage errors are no evidence of a catch
        raise SystemExit(f"pytest exited {done.returncode} for {tests}:\n{done.stdout}\n{done.stderr}")
    return done.returncode == 1, tail


def check_imports_come_from(root: Path) -> None:
    """The editable install must not shadow the scratch copy."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    where = subprocess.run([sys.executable, "-c", "import s3l_core, sweeper; print(s3l_core.__file__, sweeper.__file__)"],
                           cwd=root, env=env, check=True, capture_output=True, text=True).stdout.split()
    if not all(Path(w).resolve().is_relative_to(root.resolve()) for w in where):
        raise SystemExit(f"the scratch copy is shadowed: imports come from {where}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutation")
    parser.add_argument("--baseline", action="store_true", help="first run every named test file unmutated (must pass)")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    unknown = set(args.names) - {m.name for m in MUTATIONS}
    if unknown:
        raise SystemExit(f"unknown mutations: {sorted(unknown)}")
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.file}")
        return 0
    with tempfile.TemporaryDirectory(prefix="s3l-mutate-") as scratch:
        root = Path(scratch)
        scratch_copy(root)
        check_imports_come_from(root)
        if args.baseline:
            tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
            failed, tail = run_tests(tests, root, args.timeout)
            if failed:
                raise SystemExit(f"the unmutated tests fail; fix that first:\n{tail}")
        rows = []
        for mutation in chosen:
            original = apply(mutation, root)
            started = time.monotonic()
            try:
                caught, tail = run_tests(mutation.tests, root, args.timeout)
            finally:
                (root / mutation.file).write_text(original)
            failing = next((line for line in tail.splitlines() if line.startswith("FAILED")), "")
            caught_by = failing.removeprefix("FAILED ").split(" - ")[0].split("/")[-1] if caught else ""
            rows.append((mutation.name, mutation.file, " ".join(Path(t).name for t in mutation.tests), "yes" if caught else "NO",
                         caught_by, f"{time.monotonic() - started:.0f}"))
            print(f"{mutation.name}: {'caught by ' + caught_by if caught else 'NOT CAUGHT'} ({tail.splitlines()[-1] if tail else ''})", file=sys.stderr, flush=True)
    print("| mutation | file | tests run | caught | caught by | seconds |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    missed = [row[0] for row in rows if row[3] != "yes"]
    print(f"\n{len(rows) - len(missed)} of {len(rows)} caught" + (f"; not caught: {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
