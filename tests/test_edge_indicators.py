from __future__ import annotations

import time
from dataclasses import replace

import pytest

from edge.classes import (
    MASK,
    MASK_INCORRECT,
    MASK_OVER_CHIN,
    MASK_OVER_MOUTH_CHIN,
    NO_MASK,
    Verdict,
)
from edge.config import IndicatorsConfig, load_config
from edge.errors import HardwareError
from edge.indicators import IDLE, Indicators, mock_pin_factory

GREEN, AMBER, RED, BUZZER = 17, 27, 22, 23


def config(**changes: object) -> IndicatorsConfig:
    return replace(load_config().indicators, pins="mock", **changes)


def levels(ind: Indicators) -> dict[int, bool]:
    """Electrical level of each output pin, read from the mock pins themselves."""
    factory = ind.pin_factory
    return {n: bool(factory.pin(n).state) for n in (GREEN, AMBER, RED, BUZZER)}


@pytest.fixture
def ind():
    lines: list[str] = []
    indicators = Indicators(config(), echo=lines.append)
    indicators.lines = lines  # type: ignore[attr-defined]
    yield indicators
    indicators.close()


def test_each_verdict_lights_its_own_led(ind: Indicators) -> None:
    assert levels(ind) == {GREEN: False, AMBER: False, RED: False, BUZZER: False}
    ind.show(Verdict(MASK, 0.9))
    assert levels(ind) == {GREEN: True, AMBER: False, RED: False, BUZZER: False}
    ind.show(Verdict(NO_MASK, 0.9))
    assert levels(ind) == {GREEN: False, AMBER: False, RED: True, BUZZER: False}
    ind.show(Verdict(MASK_INCORRECT, 0.9, MASK_OVER_MOUTH_CHIN))  # steady amber by default
    assert levels(ind) == {GREEN: False, AMBER: True, RED: False, BUZZER: False}
    ind.idle()
    assert levels(ind) == {GREEN: False, AMBER: False, RED: False, BUZZER: False}
    assert ind.state == IDLE


def test_mock_pins_print_their_changes(ind: Indicators) -> None:
    ind.show(Verdict(NO_MASK, 0.9))
    ind.idle()
    assert ind.lines == ["pin GPIO22 (red) on", "pin GPIO22 (red) off"]


def test_active_low_wiring_inverts_the_pin_levels() -> None:
    with Indicators(config(active_high=False), echo=None) as ind:
        assert levels(ind)[GREEN] is True  # off = high on an active-low LED
        ind.show(Verdict(MASK, 0.9))
        assert levels(ind)[GREEN] is False
        assert ind.lit()["green"] is True


def test_amber_blinks_with_the_sub_type_pattern() -> None:
    cfg = config()
    assert cfg.amber_blink[MASK_OVER_CHIN] == (0.15, 0.15)
    with Indicators(cfg, echo=None) as ind:
        pin = ind.pin_factory.pin(AMBER)
        pin.clear_states()
        ind.show(Verdict(MASK_INCORRECT, 0.9, MASK_OVER_CHIN))
        time.sleep(0.5)
        ind.idle()
        states = [s.state for s in pin.states]
        # on, off, on, ... at least three toggles in half a second, ends off
        assert states[1:4] == [True, False, True], pin.states
        assert states[-1] is False


def test_buzzer_plays_the_configured_pattern_once(ind: Indicators) -> None:
    pin = ind.pin_factory.pin(BUZZER)
    pin.clear_states()
    ind.buzz(NO_MASK)  # default [0.4, 0.2, 0.4]: on, off, on
    end = time.monotonic() + 5.0
    while len(pin.states) < 5 and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(0.2)
    states = [(s.timestamp, s.state) for s in pin.states[1:]]
    assert [s for _, s in states] == [True, False, True, False]
    # each state lasted as configured (loose: two shared cores may be busy)
    assert [t for t, _ in states[1:]] == pytest.approx([0.4, 0.2, 0.4], abs=0.12)
    pin.clear_states()
    ind.buzz(MASK)  # silent by default
    time.sleep(0.1)
    assert len(pin.states) == 1


def test_buzzer_can_be_switched_off() -> None:
    with Indicators(config(buzzer_enabled=False), echo=None) as ind:
        assert "buzzer" not in ind.devices
        ind.buzz(NO_MASK)  # no error, no sound


def test_test_outputs_cycles_every_output_once(ind: Indicators) -> None:
    pins = {n: ind.pin_factory.pin(n) for n in (GREEN, AMBER, RED, BUZZER)}
    for p in pins.values():
        p.clear_states()
    said: list[str] = []
    ind.test_outputs(step_s=0.01, say=said.append)
    for n, p in pins.items():
        assert [s.state for s in p.states] == [False, True, False], n
    assert len(said) == 4 and "GPIO17" in said[0]


def test_close_turns_everything_off(ind: Indicators) -> None:
    ind.show(Verdict(NO_MASK, 0.9))
    ind.buzz(NO_MASK)
    factory = ind.pin_factory
    ind.close()
    assert not any(bool(factory.pin(n).state) for n in (GREEN, AMBER, RED, BUZZER))


def test_pin_already_in_use_is_a_one_line_hardware_error() -> None:
    from gpiozero import LED

    factory = mock_pin_factory()
    holder = LED(RED, pin_factory=factory)  # another program's LED on the red pin
    try:
        with pytest.raises(HardwareError) as info:
            Indicators(config(), pin_factory=factory, echo=None)
        assert str(info.value).startswith("indicators.red_pin: GPIO22 is already in use")
        # the pins it had already claimed were given back
        LED(GREEN, pin_factory=factory).close()
    finally:
        holder.close()


def test_two_outputs_on_one_pin_name_both_settings() -> None:
    with pytest.raises(HardwareError, match="indicators.red_pin: GPIO17 is already in use by indicators.green_pin"):
        Indicators(config(red_pin=GREEN), echo=None)
