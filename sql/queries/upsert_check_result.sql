INSERT INTO check_results (
    wave_id, step, suite, success, evaluated, failed, warnings, duration_ms, summary, details, checked_at
)
VALUES (
    :wave_id, :step, :suite, :success, :evaluated, :failed, :warnings, :duration_ms, :summary, :details, :now
)
ON CONFLICT (wave_id, step) DO UPDATE SET
    suite = excluded.suite,
    success = excluded.success,
    evaluated = excluded.evaluated,
    failed = excluded.failed,
    warnings = excluded.warnings,
    duration_ms = excluded.duration_ms,
    summary = excluded.summary,
    details = excluded.details,
    checked_at = excluded.checked_at
