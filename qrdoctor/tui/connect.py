"""The connection form: what to diagnose, validated as you type, with saved node profiles.

Below the target's fields come the checks' options, one field per field of the checks' declared
Options models (the same declarations the command-line flags are made from); an empty option
field means its default, shown as the placeholder.

Keys arriving in a burst (a paste, ``expect``, a slow remote link) land where they were typed.
Textual's app hands each key to the widget focused *when the app reads it*, into that widget's
own queue, and runs non-priority bindings only when a key has bubbled back up: so a Tab read
before the field had handled the letters ahead of it did not move the focus until after the
rest of the burst had been queued to the old field, and ``ctrl+u`` ran after the digits typed
behind it. Here Tab and Shift+Tab are priority bindings of the screen (the app moves the focus
as it reads them), each field runs its own editing keys in its queue (:class:`FormInput`), and
running or saving waits until every field has handled the keys sent to it.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.screen import Screen
from textual.validation import ValidationResult, Validator
from textual.widgets import Button, Checkbox, Footer, Header, Input, Label, Select, Static

from qrdoctor.core.option_fields import (
    OptionField,
    declared_values,
    option_fields,
    options_from_texts,
)
from qrdoctor.core.options import OptionError, RunOptions
from qrdoctor.core.profiles import ProfileError, check_profile_name, delete_profile, save_profile
from qrdoctor.core.target import (
    DEFAULT_CALLING_AE,
    DEFAULT_STORE_PORT,
    DEFAULT_TIMEOUT,
    Target,
    TargetError,
    TLSOptions,
    check_ae_title,
    check_port,
    check_readable,
    load_profiles,
    profiles_path,
)
from qrdoctor.tui.render import identity_hint


def _host(value: str) -> str:
    value = value.strip()
    if not value:
        raise TargetError("The PACS host is empty")
    if any(c.isspace() for c in value):
        raise TargetError(f"The host {value!r} contains spaces")
    return value


def _timeout(value: str) -> float:
    try:
        t = float(value)
    except ValueError:
        raise TargetError(f"The timeout {value!r} is not a number of seconds") from None
    if not 0 < t <= 3600:
        raise TargetError(f"The timeout {t:g} s is out of range (0-3600)")
    return t


def _store_port(value: str) -> int:
    return 0 if value.strip() == "0" else check_port(value, "The store port")


def _advertise(value: str) -> str | None:
    value = value.strip()
    if any(c.isspace() for c in value):
        raise TargetError(f"The advertised address {value!r} contains spaces")
    return value or None


def _move_ae(value: str) -> str | None:
    return check_ae_title(value, "The move destination AE title") if value.strip() else None


def _pem_file(what: str) -> Callable[[str], str | None]:
    def parse(value: str) -> str | None:
        value = value.strip()
        return check_readable(value, what) if value else None
    return parse


@dataclass(frozen=True)
class Field:
    id: str
    label: str
    parse: Callable[[str], Any]
    placeholder: str = ""
    tooltip: str | None = None


@dataclass(frozen=True)
class Connection:
    """What the form decided: the target, and the checks' options for the run."""

    target: Target
    options: RunOptions


TIMEOUT_TIP = ("Seconds each network step may take. A check's deadline is its budget times this "
               "plus 2 s; a retrieve stalls after Stall (s) without progress (default twice this).")

FIELDS = (
    Field("called_ae", "PACS AE", lambda v: check_ae_title(v, "The PACS AE title"), "e.g. ORTHANC"),
    Field("host", "Host", _host, "name or IP address"),
    Field("port", "Port", lambda v: check_port(v, "The PACS port"), "e.g. 104"),
    Field("timeout", "Timeout (s)", _timeout, tooltip=TIMEOUT_TIP),
    Field("calling_ae", "Our AE", lambda v: check_ae_title(v, "The calling AE title")),
    Field("move_ae", "Move AE", _move_ae, "same as our AE"),
    Field("store_port", "Store port", _store_port),
    Field("advertise", "Advertise", _advertise, "auto"),
)


# Shown while "DICOM over TLS" is ticked; the same checks as --tls-ca, --tls-cert, --tls-key.
TLS_FIELDS = (
    Field("tls_ca", "TLS CA file", _pem_file("The TLS CA file"), "system trust store",
          tooltip="The certificate authority (PEM) that signed the PACS's certificate."),
    Field("tls_cert", "Client cert", _pem_file("The client certificate"), "none",
          tooltip="Our client certificate (PEM), when the PACS requires one."),
    Field("tls_key", "Client key", _pem_file("The client key"), "in the cert file",
          tooltip="The client certificate's private key (PEM), when not in the certificate file."),
)


def tls_badge(target: Target | None) -> str:
    """A short marker of the connection's security, for a header or a title: "TLS", "TLS (not
    verified)", or "" for plain DICOM."""
    if target is None or target.tls is None:
        return ""
    return "TLS" if target.tls.verify else "TLS (not verified)"


def check_command(name: str) -> str:
    """The command line that runs a saved profile, quoted for a POSIX shell."""
    return f"qrdoctor check {shlex.quote(name)}"


def option_field(f: OptionField) -> Field:
    """A form field for one declared option; empty means the default (its placeholder)."""
    return Field(f.name, f.label, f.parse, f.default_text or "default", tooltip=f.help)


def option_texts(options: RunOptions | None, fields: list[OptionField]) -> dict[str, str]:
    """What the option fields show: each value set differently from its default, else nothing."""
    out: dict[str, str] = {}
    for f in fields:
        value = getattr(options.get(f.model), f.name) if options is not None else f.default
        out[f.name] = "" if value == f.default else f.text(value)
    return out


class FieldValidator(Validator):
    """Runs the same checks the command line uses and reports their message."""

    def __init__(self, field: Field) -> None:
        super().__init__()
        self.field = field

    def validate(self, value: str) -> ValidationResult:
        try:
            self.field.parse(value)
        except (TargetError, ValueError) as exc:
            return self.failure(str(exc), value)
        return self.success()


def tls_values(tls: TLSOptions | None) -> dict[str, str]:
    return {"tls_ca": (tls.ca_file or "") if tls else "", "tls_cert": (tls.cert_file or "") if tls else "",
            "tls_key": (tls.key_file or "") if tls else ""}


class FormInput(Input):
    """An input that runs its own editing keys (backspace, ctrl+u, arrows, enter, ...) in the
    order they reached it, instead of when each has bubbled back to the app: in a burst of keys,
    ``ctrl+u`` then ``11201`` clears the field and then types, not the other way round."""

    EDIT_KEYS: ClassVar[dict[str, str]] = {b.key: b.action for b in Binding.make_bindings(Input.BINDINGS)}

    async def _on_key(self, event: events.Key) -> None:
        action = None if event.is_printable else self.EDIT_KEYS.get(event.key)
        if action is None:
            await super()._on_key(event)
            return
        event.stop()
        event.prevent_default()
        await self.run_action(action)


def field_values(target: Target | None) -> dict[str, str]:
    if target is None:
        return {"called_ae": "", "host": "", "port": "104", "timeout": f"{DEFAULT_TIMEOUT:g}",
                "calling_ae": DEFAULT_CALLING_AE, "move_ae": "",
                "store_port": str(DEFAULT_STORE_PORT), "advertise": ""}
    return {
        "called_ae": target.called_ae, "host": target.host, "port": str(target.port),
        "timeout": f"{target.timeout:g}", "calling_ae": target.calling_ae,
        "move_ae": "" if target.move_ae == target.calling_ae else (target.move_ae or ""),
        "store_port": str(target.store_port), "advertise": target.advertise or "",
    }


class ConnectScreen(Screen[Connection | None]):
    """Dismisses with the Connection (target and options) to diagnose, or None when the user
    backs out."""

    BINDINGS = [
        Binding("ctrl+r", "run", "Run", priority=True),
        Binding("ctrl+s", "save_profile", "Save profile", priority=True),
        Binding("ctrl+d", "delete_profile", "Delete profile", priority=True),
        Binding("escape", "back", "Back"),
        # priority: the app moves the focus as it reads the key, so the keys behind it in a burst
        # go to the next field (see the module's docstring)
        Binding("tab", "app.focus_next", "Next field", show=False, priority=True),
        Binding("shift+tab", "app.focus_previous", "Previous field", show=False, priority=True),
    ]

    DEFAULT_CSS = """
    ConnectScreen .form-grid Checkbox { border: none; padding: 0; height: 1; background: transparent; }
    ConnectScreen .form-grid #tls { column-span: 3; }
    """

    def __init__(self, target: Target | None = None, *, options: RunOptions | None = None,
                 cursor_blink: bool = True) -> None:
        super().__init__()
        self.initial = target
        self.initial_options = options
        self.declared = option_fields()
        self.option_ids = [f.name for f in self.declared]
        self.fields = (*FIELDS, *TLS_FIELDS, *(option_field(f) for f in self.declared))
        self.by_id = {f.id: f for f in self.fields}
        self.cursor_blink = cursor_blink
        self.touched: set[str] = set()
        self.profiles: dict[str, dict] = {}

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="")
        values = field_values(self.initial)
        with VerticalScroll(id="connect"):
            yield Static("Which PACS should qrdoctor diagnose?", classes="form-title")
            with Grid(classes="form-grid"):
                yield Label("Profile")
                yield Select([], prompt="saved nodes", id="profile", compact=True, allow_blank=True)
                yield Label("Save as")
                yield FormInput(placeholder="profile name", id="profile_name", compact=True,
                                select_on_focus=False)
                yield Static("The PACS", classes="form-section")
                for f in FIELDS[:4]:
                    yield from self._field(f, values[f.id])
                tls = self.initial.tls if self.initial else None
                yield Label("TLS")
                yield Checkbox("DICOM over TLS", tls is not None, id="tls", compact=True)
                tls_texts = tls_values(tls)
                for f in TLS_FIELDS:
                    yield from self._field(f, tls_texts[f.id], classes="tls-detail", shown=tls is not None)
                verify = Checkbox("PACS certificate", tls is None or tls.verify, id="tls_verify",
                                  compact=True, classes="tls-detail")
                verify_label = Label("Verify", classes="tls-detail")
                verify_label.display = verify.display = tls is not None
                yield verify_label
                yield verify
                yield Static("This workstation", classes="form-section")
                yield Static("", id="identity-hint", classes="form-hint", markup=False)
                for f in FIELDS[4:]:
                    yield from self._field(f, values[f.id])
                if self.declared:
                    yield Static("Options of the checks", classes="form-section")
                    texts = option_texts(self.initial_options, self.declared)
                    for f in self.fields[len(FIELDS) + len(TLS_FIELDS):]:
                        yield from self._field(f, texts[f.id])
        # below the scrolling form, so the errors and the buttons show whatever the terminal size
        yield Static("", id="form-errors", markup=False)
        with Horizontal(classes="buttons"):
            yield Button("Run the checks", id="run", variant="primary", compact=True)
            yield Button("Save profile", id="save", compact=True)
            yield Button("Delete profile", id="delete", compact=True)
        yield Footer(compact=True)

    def _field(self, f: Field, value: str, classes: str = "", shown: bool = True) -> ComposeResult:
        label = Label(f.label, classes=f"field-label {classes}".strip())
        inp = FormInput(value, placeholder=f.placeholder, id=f.id, compact=True,
                        validators=[FieldValidator(f)], validate_on=["changed", "submitted"],
                        select_on_focus=False, classes=classes)
        label.display = inp.display = shown
        yield label
        inp.tooltip = f.tooltip
        yield inp

    def on_mount(self) -> None:
        for inp in self.query(Input):
            inp.cursor_blink = self.cursor_blink
        self.title = self.app.title
        self._show_tls()
        self.reload_profiles()
        first = next((f.id for f in FIELDS if not self.query_one(f"#{f.id}", Input).value), FIELDS[0].id)
        self.query_one(f"#{first}", Input).focus()
        self._show_errors()
        self._show_identity_hint()

    # ---- profiles -------------------------------------------------------------------------
    def reload_profiles(self, select: str | None = None) -> None:
        try:
            self.profiles = load_profiles()
        except TargetError as exc:
            self.profiles = {}
            self.notify(str(exc), title="Profiles", severity="warning", markup=False)
        sel = self.query_one("#profile", Select)
        with self.prevent(Select.Changed):
            sel.set_options((name, name) for name in sorted(self.profiles))
            if select in self.profiles:
                sel.value = select

    @on(Select.Changed, "#profile")
    def _profile_chosen(self, event: Select.Changed) -> None:
        name = event.value
        if not isinstance(name, str) or name not in self.profiles:
            return
        p = self.profiles[name]
        values = {
            "called_ae": p.get("called_ae", ""), "host": p.get("host", ""), "port": p.get("port", ""),
            "timeout": p.get("timeout", DEFAULT_TIMEOUT), "calling_ae": p.get("calling_ae", DEFAULT_CALLING_AE),
            "move_ae": p.get("move_ae", ""), "store_port": p.get("store_port", DEFAULT_STORE_PORT),
            "advertise": p.get("advertise", ""),
        }
        for key, value in values.items():
            text = f"{value:g}" if isinstance(value, float) else str(value)
            self.query_one(f"#{key}", Input).value = text
            self.touched.add(key)
        saved = declared_values(p, self.declared)
        for f in self.declared:
            self.query_one(f"#{f.name}", Input).value = f.text(saved.get(f.name))
            self.touched.add(f.name)
        # the files as saved: the form says what is wrong with one that cannot be read
        self.set_tls(p.get("tls") is True, {key: str(p.get(key) or "") for key in tls_values(None)},
                     p.get("tls_verify") is not False)
        if self.tls_on:
            self.notify("This profile uses DICOM over TLS (see the TLS fields).", title=name, markup=False)
        self.query_one("#profile_name", Input).value = name

    # ---- TLS -------------------------------------------------------------------------------
    @property
    def tls_on(self) -> bool:
        return self.query_one("#tls", Checkbox).value

    def set_tls(self, on_: bool, files: dict[str, str], verify: bool) -> None:
        """Show a profile's TLS settings: on with its files, or off (and its fields emptied)."""
        self.query_one("#tls", Checkbox).value = on_
        for key, text in files.items():
            self.query_one(f"#{key}", Input).value = text if on_ else ""
            self.touched.add(key)
        self.query_one("#tls_verify", Checkbox).value = verify or not on_
        self._show_tls()

    @on(Checkbox.Changed)
    def _tls_changed(self, event: Checkbox.Changed) -> None:
        self._show_tls()
        self._show_errors()

    def _show_tls(self) -> None:
        """The TLS fields show while TLS is on; the header says whether the run will use it."""
        on_ = self.tls_on
        for widget in self.query(".tls-detail"):
            widget.display = on_
        verify_box = self.query_one("#tls_verify", Checkbox)
        verify = verify_box.value
        # in words as well: a monochrome terminal shows a ticked and an unticked box alike
        self.query_one("#tls", Checkbox).label = "on: DICOM over TLS" if on_ else "off: plain DICOM"
        verify_box.label = "on: PACS certificate" if verify else "off: tests only"
        self.sub_title = "connection" + ("" if not on_ else " · TLS" if verify else " · TLS (not verified)")

    def tls_options(self) -> TLSOptions | None:
        """The TLS options the fields describe (TargetError when a file cannot be read)."""
        if not self.tls_on:
            return None
        files = {f.id: f.parse(self.query_one(f"#{f.id}", Input).value) for f in TLS_FIELDS}
        return TLSOptions(ca_file=files["tls_ca"], cert_file=files["tls_cert"], key_file=files["tls_key"],
                          verify=self.query_one("#tls_verify", Checkbox).value)

    def action_save_profile(self) -> None:
        self.after_pending_keys(self._save_profile)

    def _save_profile(self) -> None:
        from qrdoctor.tui.modals import ConfirmScreen

        chosen = self.build_connection(show=True)
        if chosen is None:
            return
        try:
            name = check_profile_name(self.query_one("#profile_name", Input).value)
        except ProfileError as exc:
            self.notify(str(exc), title="Profile not saved", severity="error", markup=False)
            self.query_one("#profile_name", Input).focus()
            return
        if name not in self.profiles:
            self._write_profile(name, chosen)
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._write_profile(name, chosen)

        self.app.push_screen(ConfirmScreen(f"Replace the saved profile {name!r} with these settings?",
                                           yes="Replace"), confirmed)

    def _write_profile(self, name: str, chosen: Connection) -> None:
        try:
            path = save_profile(name, chosen.target, options=chosen.options.flat())
        except ProfileError as exc:
            self.notify(str(exc), title="Profile not saved", severity="error", markup=False)
            self.query_one("#profile_name", Input).focus()
            return
        self.reload_profiles(select=name)
        self.notify(f"Saved profile {name} in {path}. Use it with: {check_command(name)}",
                    title="Profile saved", markup=False)

    def after_pending_keys(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` (on this screen) once every field has handled the keys already sent
        to it: a run or a save pressed at the end of a burst sees everything typed before it."""
        fields = list(self.query(Input))
        left = [len(fields)]

        def handled() -> None:
            left[0] -= 1
            if left[0] == 0:
                self.call_later(callback)

        for inp in fields:
            if not inp.call_later(handled):  # its queue is closed: nothing is pending there
                handled()
        if not fields:
            self.call_later(callback)

    def action_delete_profile(self) -> None:
        from qrdoctor.tui.modals import ConfirmScreen

        sel = self.query_one("#profile", Select).value
        name = sel if isinstance(sel, str) else self.query_one("#profile_name", Input).value.strip()
        if name not in self.profiles:
            self.notify("Choose a saved profile to delete first.", severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if not yes:
                return
            try:
                delete_profile(name)
            except ProfileError as exc:
                self.notify(str(exc), title="Profile not deleted", severity="error", markup=False)
                return
            self.reload_profiles()
            self.notify(f"Deleted profile {name} from {profiles_path()}.", markup=False)

        self.app.push_screen(ConfirmScreen(f"Delete the profile {name!r}?"), confirmed)

    @on(Button.Pressed, "#save")
    def _save_pressed(self) -> None:
        self.action_save_profile()

    @on(Button.Pressed, "#delete")
    def _delete_pressed(self) -> None:
        self.action_delete_profile()

    # ---- validation -----------------------------------------------------------------------
    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:

        if event.input.id in self.by_id:
            self.touched.add(event.input.id)
            self._show_errors()
        if event.input.id in ("calling_ae", "move_ae", "store_port"):
            self._show_identity_hint()

    def _show_identity_hint(self) -> None:
        """Next to the workstation's fields: with qrdoctor's own AE title (or a port that may not
        be the workstation's) the run tests qrdoctor's registration, not the workstation's."""
        def value(field_id: str) -> str:
            return self.query_one(f"#{field_id}", Input).value.strip()

        try:
            port: int | None = _store_port(value("store_port"))
        except TargetError:
            port = None
        hint = identity_hint(value("calling_ae"), value("move_ae") or None, port)
        line = self.query_one("#identity-hint", Static)
        line.update(hint[0] if hint else "")
        line.tooltip = Text(hint[1]) if hint else None
        line.display = hint is not None

    def errors(self, every: bool = False) -> dict[str, str]:
        """Validation messages by field: the touched fields, or every field."""
        out: dict[str, str] = {}
        tls_off = not self.tls_on
        for f in self.fields:
            if not every and f.id not in self.touched or tls_off and f in TLS_FIELDS:
                continue
            inp = self.query_one(f"#{f.id}", Input)
            result = inp.validate(inp.value)
            if result is not None and not result.is_valid:
                out[f.id] = "; ".join(result.failure_descriptions)
        return out

    def _show_errors(self, every: bool = False) -> dict[str, str]:
        errors = self.errors(every)
        text = "\n".join(f"{self.by_id[k].label}: {v}" for k, v in errors.items())
        self.query_one("#form-errors", Static).update(text)
        return errors

    def build_target(self, show: bool = False) -> Target | None:
        errors = self._show_errors(every=True) if show else self.errors(every=True)
        if errors:
            self.query_one(f"#{next(iter(errors))}", Input).focus()
            return None
        v = {f.id: f.parse(self.query_one(f"#{f.id}", Input).value) for f in FIELDS}
        try:
            return Target(host=v["host"], port=v["port"], called_ae=v["called_ae"],
                          calling_ae=v["calling_ae"], move_ae=v["move_ae"],
                          store_port=v["store_port"], advertise=v["advertise"],
                          timeout=v["timeout"], tls=self.tls_options())
        except TargetError as exc:
            self.query_one("#form-errors", Static).update(str(exc))
            return None

    def build_options(self) -> RunOptions | None:
        """The checks' options from their fields (the defaults where a field is empty)."""
        texts = {name: self.query_one(f"#{name}", Input).value for name in self.option_ids}
        try:
            return options_from_texts(texts, self.declared)
        except OptionError as exc:
            self.query_one("#form-errors", Static).update(str(exc))
            return None

    def build_connection(self, show: bool = False) -> Connection | None:
        target = self.build_target(show=show)
        options = self.build_options() if target is not None else None
        return Connection(target, options) if target is not None and options is not None else None

    # ---- leaving ---------------------------------------------------------------------------
    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "profile_name":
            self.action_save_profile()
        else:
            self.action_run()

    @on(Button.Pressed, "#run")
    def action_run(self) -> None:
        self.after_pending_keys(self._run)

    def _run(self) -> None:
        chosen = self.build_connection(show=True)
        if chosen is not None:
            self.dismiss(chosen)

    def action_back(self) -> None:
        self.dismiss(None)
