INSERT INTO check_results (wave_id, step, suite, success, evaluated, failed, summary, details, checked_at)
VALUES (:wave_id, :step, :suite, :success, :evaluated, :failed, :summary, :details, :now)
ON CONFLICT (wave_id, step) DO UPDATE SET
    suite = excluded.suite,
    success = excluded.success,
    evaluated = excluded.evaluated,
    failed = excluded.failed,
    summary = excluded.summary,
    details = excluded.details,
    checked_at = excluded.checked_at
