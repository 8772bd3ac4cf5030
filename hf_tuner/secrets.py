"""Keep Hub tokens out of everything hf-tuner prints or writes."""
from __future__ import annotations

import re
import shlex

# Hugging Face user/org tokens start with hf_; the pattern also catches api_org_ tokens.
TOKEN_PATTERN = re.compile(r"\b(hf_[A-Za-z0-9]{8,}|api_org_[A-Za-z0-9]{8,})\b")
SECRET_FLAGS = ("--token", "--hub-token", "--hub_token")


def redact(text: str, *secrets: str | None) -> str:
    """Replace anything that looks like a Hub token, and each given secret, by '***'."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return TOKEN_PATTERN.sub("***", text)


def command_line(argv: list[str], program: tuple[str, ...] = ("hf-tuner",)) -> str:
    """`hf-tuner ...` as typed, with the value of any --token flag and token-like strings hidden."""
    out, hide_next = [], False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        flag, eq, _ = arg.partition("=")
        if flag in SECRET_FLAGS:
            if eq:
                out.append(f"{flag}=***")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(redact(arg))
    return shlex.join([*program, *out])
