"""Self-check thresholds and reasons, and the CPU meter on real work."""

from __future__ import annotations

import time

from harness.load.selfcheck import CpuMeter, invalid_reasons


def test_reasons_name_the_cause_and_the_limit() -> None:
    assert invalid_reasons(0.005, 5.0, 60.0, 1000) == []
    late = invalid_reasons(0.032, 5.0, 60.0, 1000)
    (fell,) = late
    assert fell.kind == "fell_behind" and (fell.measured, fell.limit, fell.unit) == (
        0.032,
        0.01,
        "share",
    )
    assert str(fell) == "generator fell behind: 3.2% of frames sent > 5 ms late (limit 1%)"
    assert fell.hint and "late_threshold_ms" in fell.hint
    cpu = invalid_reasons(0.0, 5.0, 97.0, 1000)
    assert [(r.kind, r.measured, r.limit, r.unit) for r in cpu] == [
        ("cpu_saturated", 97.0, 95.0, "%")
    ]
    assert cpu[0].message == "generator CPU saturated: 97% of one core (limit 95%)"
    assert len(invalid_reasons(0.5, 5.0, 99.0, 1000)) == 2
    assert invalid_reasons(0.5, 5.0, 10.0, 0) == []  # nothing sent: no late share to judge


def test_cpu_meter_sees_busy_and_idle_time() -> None:
    meter = CpuMeter()
    meter.start()
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        pass
    busy = meter.stop()
    meter.start()
    time.sleep(0.3)
    idle = meter.stop()
    assert busy > idle
    assert idle < 20
