"""LEDs and buzzer with gpiozero: green = mask, amber = mask worn wrong, red = no mask.

All lights off is the idle state (nobody at the door). The amber LED may blink with a pattern per
sub-type, and the buzzer plays a configurable on/off pattern once when a no_mask or
mask_incorrect verdict is committed. Off a Raspberry Pi (or with ``--pins mock``) the outputs
drive gpiozero's MockFactory pins and every pin change is reported through ``echo``.

One buzzer worker thread is started with the indicators and lives as long as they do; patterns
are handed to it, so a busy door never spawns a thread per person.
"""

from __future__ import annotations

import logging
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

from edge.classes import MASK, MASK_INCORRECT, NO_MASK, Verdict
from edge.config import IndicatorsConfig
from edge.device import is_raspberry_pi
from edge.errors import HardwareError

log = logging.getLogger("edge.indicators")

IDLE = "idle"
# which light a Mask-net class switches on
LIGHT_OF: dict[str, str] = {MASK: "green", MASK_INCORRECT: "amber", NO_MASK: "red"}

Echo = Callable[[str], None]


def _stderr_echo(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def mock_pin_factory(echo: Callable[[str, bool], None] | None = None) -> Any:
    """A gpiozero MockFactory whose pins report every change as ``echo(pin_name, level)``.

    Mock pins record their history for tests (``pin.states``); it is kept short here because a
    mock run may last as long as a real one.
    """
    from gpiozero.pins.mock import MockFactory, MockPin

    class EchoMockPin(MockPin):
        def _change_state(self, value: bool) -> bool:
            changed = super()._change_state(value)
            if changed:
                if len(self.states) > 512:
                    del self.states[:256]
                if echo is not None:
                    echo(self.info.name, bool(value))
            return changed

    return MockFactory(pin_class=EchoMockPin)


class Indicators:
    """The door's outputs. ``show(verdict)`` lights the verdict's LED, ``idle()`` turns all off."""

    def __init__(
        self,
        config: IndicatorsConfig,
        pins: str | None = None,
        echo: Echo | None = _stderr_echo,
        pin_factory: Any = None,
    ) -> None:
        self.config = config
        mode = pins or config.pins
        if mode == "auto":
            mode = "gpio" if is_raspberry_pi() else "mock"
        self.mode = mode
        self._echo = echo
        self.roles: dict[int, str] = {
            config.green_pin: "green",
            config.amber_pin: "amber",
            config.red_pin: "red",
        }
        if pin_factory is None and mode == "mock":
            pin_factory = mock_pin_factory(self._on_mock_change)
        self.pin_factory = pin_factory
        self.state = IDLE
        self._closed = False
        self._devices: dict[str, Any] = {}
        try:
            self._build(config, pin_factory)
        except BaseException:
            self._close_devices()
            raise
        self._pattern: tuple[float, ...] = ()
        self._wake = threading.Condition()
        self._buzz_thread: threading.Thread | None = None
        if "buzzer" in self._devices:
            self._buzz_thread = threading.Thread(target=self._buzz_loop, name="masknet-buzzer", daemon=True)
            self._buzz_thread.start()

    # -- setup ----------------------------------------------------------------------------------
    def _build(self, config: IndicatorsConfig, pin_factory: Any) -> None:
        try:
            from gpiozero import LED, Buzzer
            from gpiozero.exc import BadPinFactory, GPIOPinInUse
        except ImportError:
            raise HardwareError(
                "gpiozero is not installed; run ./install.sh (or pip install gpiozero)"
            ) from None
        wanted: list[tuple[str, str, int, type]] = [
            ("green", "indicators.green_pin", config.green_pin, LED),
            ("amber", "indicators.amber_pin", config.amber_pin, LED),
            ("red", "indicators.red_pin", config.red_pin, LED),
        ]
        if config.buzzer_enabled:
            wanted.append(("buzzer", "indicators.buzzer_pin", config.buzzer_pin, Buzzer))
            self.roles.setdefault(config.buzzer_pin, "buzzer")
        owner: dict[int, str] = {}
        for role, key, pin, cls in wanted:
            try:
                # gpiozero warns once per GPIO library it tries and lacks; the outcome is reported
                # here in one line instead
                with warnings.catch_warnings(record=True) as tried:
                    warnings.simplefilter("always")
                    self._devices[role] = cls(
                        pin, active_high=config.active_high, initial_value=False, pin_factory=pin_factory
                    )
                for w in tried:
                    log.debug("gpiozero: %s", w.message)
            except GPIOPinInUse:
                other = f" by {owner[pin]}" if pin in owner else " by another program"
                raise HardwareError(
                    f"{key}: GPIO{pin} is already in use{other}; give each output its own pin "
                    "or stop the program holding it"
                ) from None
            except BadPinFactory:
                raise HardwareError(
                    "no GPIO library found for gpiozero (install python3-lgpio), "
                    "or run with --pins mock off a Raspberry Pi"
                ) from None
            except Exception as exc:  # lgpio/RPi.GPIO raise their own types ("GPIO busy")
                text = " ".join(str(exc).split()) or type(exc).__name__
                if "busy" in text.lower() or "in use" in text.lower():
                    raise HardwareError(
                        f"{key}: GPIO{pin} is already in use by another program ({text}); "
                        "stop it or choose another pin"
                    ) from None
                raise HardwareError(f"{key}: cannot set up GPIO{pin} ({text})") from None
            owner[pin] = key

    def _on_mock_change(self, pin_name: str, level: bool) -> None:
        if self._echo is None:
            return
        number = int(pin_name[4:]) if pin_name.startswith("GPIO") and pin_name[4:].isdigit() else -1
        role = self.roles.get(number, "?")
        on = level == self.config.active_high
        self._echo(f"pin {pin_name} ({role}) {'on' if on else 'off'}")

    # -- state ----------------------------------------------------------------------------------
    @property
    def devices(self) -> dict[str, Any]:
        return dict(self._devices)

    def lit(self) -> dict[str, bool]:
        """Which outputs are active now (logical, whatever the wiring polarity)."""
        return {role: bool(dev.is_active) for role, dev in self._devices.items()}

    def show(self, verdict: Verdict) -> None:
        """Light the verdict's LED (the others off); a no-op when it is already shown."""
        state = verdict.label
        if state == self.state or self._closed:
            return
        light = LIGHT_OF[verdict.class_id]
        for role in ("green", "amber", "red"):
            if role != light:
                self._devices[role].off()
        led = self._devices[light]
        blink = self.config.amber_blink.get(verdict.sub_type or "", ()) if light == "amber" else ()
        if blink:
            led.blink(on_time=blink[0], off_time=blink[1], background=True)
        else:
            led.on()
        self.state = state

    def idle(self) -> None:
        """Nobody at the door: all lights off."""
        if self.state == IDLE or self._closed:
            return
        for role in ("green", "amber", "red"):
            self._devices[role].off()
        self.state = IDLE

    def buzz(self, class_id: str) -> None:
        """Play the buzzer pattern configured for a Mask-net class (once, in the background)."""
        pattern = self.config.buzzer.get(class_id, ())
        if not pattern or self._buzz_thread is None or self._closed:
            return
        with self._wake:
            self._pattern = tuple(pattern)
            self._wake.notify()

    def _buzz_loop(self) -> None:
        buzzer = self._devices["buzzer"]
        while True:
            with self._wake:
                while not self._pattern and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                pattern, self._pattern = self._pattern, ()
            for i, seconds in enumerate(pattern):
                if i % 2 == 0:
                    buzzer.on()
                else:
                    buzzer.off()
                with self._wake:
                    # a new pattern or close() cuts the current one short
                    if self._wake.wait_for(lambda: bool(self._pattern) or self._closed, timeout=seconds):
                        break
            buzzer.off()

    def test_outputs(self, step_s: float = 1.0, say: Echo | None = _stderr_echo) -> None:
        """Wiring check: each LED on alone for ``step_s``, then the buzzer, then all off."""
        import time

        for role in ("green", "amber", "red", "buzzer"):
            dev = self._devices.get(role)
            if dev is None:
                continue
            pin = next(p for p, r in self.roles.items() if r == role)
            if say is not None:
                say(f"testing {role} ({'LED' if role != 'buzzer' else 'buzzer'} on GPIO{pin})")
            dev.on()
            time.sleep(step_s)
            dev.off()
        self.state = IDLE

    # -- shutdown -------------------------------------------------------------------------------
    def _close_devices(self) -> None:
        for dev in self._devices.values():
            try:
                dev.off()
                dev.close()
            except Exception as exc:
                log.debug("close: %s", exc)

    def close(self) -> None:
        """All outputs off and the pins released. Safe to call twice."""
        if self._closed:
            return
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        if self._buzz_thread is not None:
            self._buzz_thread.join(timeout=2.0)
        self._close_devices()
        self.state = IDLE

    def __enter__(self) -> Indicators:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
