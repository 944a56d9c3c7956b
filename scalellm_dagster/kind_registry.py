"""A family's kinds by name (the embedders', the teachers'): what a `SCALELLM_*` kind setting may say."""

from __future__ import annotations

from scalellm_dagster.settings import SettingError


class KindRegistry(dict):
    """`{name: kind}` for the kinds of one family; every kind has `name` and `summary` (a few words for messages).
    `setting` names the environment variable that picks one."""

    def __init__(self, setting: str):
        super().__init__()
        self.setting = setting

    def register(self, kind):
        self[kind.name] = kind
        return kind

    def get_kind(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise SettingError(f"{self.setting}={name!r}: expected {self.described()}") from None

    def described(self) -> str:
        """The kinds as a settings error lists them: `'static' (offline, the default), 'lsa' (...) or ...`."""
        parts = [f"{name!r} ({kind.summary})" for name, kind in self.items()]
        return ", ".join(parts[:-1]) + f" or {parts[-1]}" if len(parts) > 1 else parts[0]
