"""Which judge prompt text a scorer uses: ours (bundled, versioned) or a file the user supplies.

Our prompts are written for this project and ask each benchmark's official question with its
official criteria and label set. A user who holds the exact published text can put it in a file
and pass it to the task (`-T judge_prompt=PATH`, or `-T judge_prompt=NAME:PATH` where a task has
several judges); the verdict's metadata records which text was used by its sha256, so a log says
what the judge read. A user's file is filled as the published scripts fill theirs: each `{name}`
that names an input (ours, e.g. `{response}`, or the published script's, e.g. SIUO's `{explanation}`)
is replaced once, and every other brace stays as written (SIUO's effectiveness prompt shows
`{choose from ...}` to the judge).

Our prompts fence every inserted text between marker lines carrying a tag chosen per call that
occurs in none of the inserted texts, so a response cannot close the fence by imitating it. A
user's file gets the raw texts, as the published scripts inserted them.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vlmguard_eval.core.prompts import load_prompt

# the marker names of fenced fields, as our templates describe them
FIELD_LABELS: dict[str, str] = {
    "question": "QUESTION",
    "response": "RESPONSE",
    "reference": "REFERENCE RESPONSE",
    "reference_answer": "REFERENCE RESPONSE",
    "safety_warning": "SAFETY WARNING",
}
# a placeholder in a user's file: a name in braces; any other braced text is the file's own
PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)\}")


@dataclass(frozen=True)
class JudgePrompt:
    """A judge template and where it came from; `fenced` is True for ours, False for a user's file."""

    name: str
    text: str
    source: str
    fenced: bool
    aliases: Mapping[str, str] = field(default_factory=dict)  # a published script's names for our inputs

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def placeholders(self) -> set[str]:
        """The inputs the text asks for: format fields in ours, braced names in a user's file."""
        if self.fenced:
            return {field for _, field, _, _ in string.Formatter().parse(self.text) if field is not None}
        return set(PLACEHOLDER.findall(self.text))

    def fill(self, fields: Mapping[str, str], trusted: Iterable[str] = ()) -> str:
        """The prompt with `fields` inserted; in our prompts every field not in `trusted` is fenced."""
        if not self.fenced:  # one pass, so an inserted text is never searched for placeholders itself
            values = {**fields, **{alias: fields[ours] for alias, ours in self.aliases.items() if ours in fields}}
            return PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), self.text)
        untrusted = {k: str(v) for k, v in fields.items() if k not in set(trusted)}
        tag = fence_tag(untrusted.values())
        filled = {k: fence(k, v, tag) if k in untrusted else v for k, v in fields.items()}
        return self.text.format(**filled)

    def record(self) -> dict[str, str]:
        """What a verdict's metadata keeps about the prompt."""
        return {"prompt": self.name, "prompt_source": self.source, "prompt_sha256": self.sha256}


def fence_tag(texts: Iterable[str]) -> str:
    """A random tag that occurs in none of `texts` (so no text can forge the closing marker)."""
    texts = list(texts)
    while True:
        tag = secrets.token_hex(6)
        if not any(tag in text for text in texts):
            return tag


def fence(field: str, text: str, tag: str) -> str:
    label = FIELD_LABELS.get(field, field.upper())
    return f"<<<{label} {tag}>>>\n{text}\n<<<END {label} {tag}>>>"


def bundled_prompt(name: str, version: str) -> JudgePrompt:
    return JudgePrompt(name, load_prompt(name, version), f"vlmguard_eval/prompts/{name}.{version}.txt", fenced=True)


def user_prompt(
    name: str, path: str | Path, allowed: set[str], aliases: Mapping[str, str] | None = None
) -> JudgePrompt:
    """A user's prompt file for judge `name`: its placeholders must name inputs (ours or the published
    script's `aliases`), one of them the response to judge."""
    aliases = dict(aliases or {})
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"judge prompt file for {name!r} not found: {file}")
    prompt = JudgePrompt(name, file.read_text(encoding="utf-8"), str(file.resolve()), fenced=False, aliases=aliases)
    found = prompt.placeholders()
    unknown = found - allowed - aliases.keys()
    if unknown:
        raise ValueError(
            f"{file}: unknown placeholder(s) {sorted(unknown)} for judge {name!r}; "
            f"available: {sorted(allowed | aliases.keys())}"
        )
    if not any(aliases.get(placeholder, placeholder) == "response" for placeholder in found):
        names = " or ".join(f"{{{n}}}" for n in ["response", *(a for a, ours in aliases.items() if ours == "response")])
        raise ValueError(f"{file}: judge {name!r} needs the answer to judge, as {names}")
    return prompt


def prompt_files(option: str | list[str] | None, names: Iterable[str]) -> dict[str, str]:
    """Parse `-T judge_prompt=...`: a lone PATH (tasks with one judge) or NAME:PATH entries."""
    names = list(names)
    if option is None or option == "" or option == []:
        return {}
    if not names:
        raise ValueError("judge_prompt was given, but this task runs no judge")
    entries = [option] if isinstance(option, str) else [str(e) for e in option]
    out: dict[str, str] = {}
    for entry in entries:
        name, sep, path = entry.partition(":")
        if sep and name in names:
            out[name] = path
        elif len(names) == 1:
            out[names[0]] = entry
        else:
            raise ValueError(f"judge_prompt {entry!r}: name the judge as NAME:PATH, NAME one of {', '.join(names)}")
    return out


def judge_prompt(
    name: str,
    version: str,
    files: Mapping[str, str] | None,
    allowed: set[str],
    aliases: Mapping[str, str] | None = None,
) -> JudgePrompt:
    """The user's file for `name` when one is given, else our bundled prompt."""
    if files and name in files:
        return user_prompt(name, files[name], allowed, aliases)
    return bundled_prompt(name, version)
