"""The lab's systemd emulator tuning applies to the installed emulator, all or nothing."""

from __future__ import annotations

from capstan.lab import emulator, rootfs


def test_every_edit_matches_the_installed_emulator_exactly_once() -> None:
    source = rootfs.emulator_sources()[0].read_text()
    tuned, misses = emulator.tune(source)
    assert misses == []
    assert "lapseTimeout = 0" in tuned and "MinimumYield: float = 0.1" in tuned
    compile(tuned, "systemctl", "exec")  # still valid Python


def test_an_emulator_that_differs_is_left_unchanged_and_the_miss_is_named() -> None:
    source = rootfs.emulator_sources()[0].read_text().replace("MinimumYield: float = 0.5", "MinimumYield = 1")
    tuned, misses = emulator.tune(source)
    assert tuned == source
    assert misses == ["MinimumYield: float = 0.5"]
