"""Discord's form validation for message-like payloads, producing its error shapes."""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List, Optional, Tuple
from urllib.parse import urlsplit

from . import limits as L

Path = Tuple[Any, ...]


class ApiError(Exception):
    """Raised inside the fake to answer a request with a Discord error."""

    def __init__(self, status: int, body: Dict[str, Any], headers: Optional[Dict[str, str]] = None):
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


class FormErrors:
    """Accumulates nested ``{"field": {"_errors": [...]}}`` errors like Discord's 50035."""

    def __init__(self) -> None:
        self.tree: Dict[str, Any] = {}

    def add(self, path: Path, code: str, message: str) -> None:
        node = self.tree
        for part in path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def max_length(self, path: Path, limit: int) -> None:
        self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")

    def bad_length(self, path: Path, low: int, high: int) -> None:
        self.add(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")

    def required(self, path: Path) -> None:
        self.add(path, "BASE_TYPE_REQUIRED", "This field is required")

    def __bool__(self) -> bool:
        return bool(self.tree)

    def raise_if_any(self) -> None:
        if self.tree:
            raise invalid_form_body(self.tree)


def discord_error(code: int, message: str) -> Dict[str, Any]:
    return {"message": message, "code": code}


def invalid_form_body(errors: Dict[str, Any]) -> ApiError:
    return ApiError(400, {"code": 50035, "errors": errors, "message": "Invalid Form Body"})


def empty_message() -> ApiError:
    return ApiError(400, discord_error(50006, "Cannot send an empty message"))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def check_url(errors: FormErrors, path: Path, url: Any, schemes: Iterable[str]) -> None:
    if url is None:
        return
    if not isinstance(url, str):
        errors.add(path, "URL_TYPE_INVALID_URL", "Not a well formed URL.")
        return
    if len(url) > L.MAX_URL_LENGTH:
        errors.max_length(path, L.MAX_URL_LENGTH)
        return
    parts = urlsplit(url)
    if not parts.scheme or (parts.scheme != "attachment" and not parts.netloc):
        errors.add(path, "URL_TYPE_INVALID_URL", "Not a well formed URL.")
        return
    if parts.scheme not in schemes:
        allowed = ", ".join(repr(s) for s in schemes)
        errors.add(
            path,
            "URL_TYPE_INVALID_SCHEME",
            f'Scheme "{parts.scheme}" is not supported. Scheme must be one of ({allowed}).',
        )


def embed_size(embed: Dict[str, Any]) -> int:
    total = len(_text(embed.get("title"))) + len(_text(embed.get("description")))
    for field in embed.get("fields") or []:
        if isinstance(field, dict):
            total += len(_text(field.get("name"))) + len(_text(field.get("value")))
    footer = embed.get("footer")
    if isinstance(footer, dict):
        total += len(_text(footer.get("text")))
    author = embed.get("author")
    if isinstance(author, dict):
        total += len(_text(author.get("name")))
    return total


def check_embeds(errors: FormErrors, path: Path, embeds: Any) -> None:
    if embeds is None:
        return
    if not isinstance(embeds, list):
        errors.add(path, "LIST_TYPE_CONVERT", "Must be an array.")
        return
    if len(embeds) > L.MAX_EMBEDS_PER_MESSAGE:
        errors.max_length(path, L.MAX_EMBEDS_PER_MESSAGE)
        return
    total = 0
    for i, embed in enumerate(embeds):
        p = path + (i,)
        if not isinstance(embed, dict):
            errors.add(p, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            continue
        total += embed_size(embed)
        title = embed.get("title")
        if title is not None and len(_text(title)) > L.MAX_EMBED_TITLE:
            errors.max_length(p + ("title",), L.MAX_EMBED_TITLE)
        desc = embed.get("description")
        if desc is not None and len(_text(desc)) > L.MAX_EMBED_DESCRIPTION:
            errors.max_length(p + ("description",), L.MAX_EMBED_DESCRIPTION)
        color = embed.get("color")
        if color is not None:
            if not isinstance(color, int) or isinstance(color, bool):
                errors.add(p + ("color",), "NUMBER_TYPE_COERCE", f"Value \"{color}\" is not int.")
            elif color < 0 or color > L.MAX_EMBED_COLOR:
                errors.add(
                    p + ("color",),
                    "NUMBER_TYPE_MAX",
                    f"int value should be less than or equal to {L.MAX_EMBED_COLOR}.",
                )
        check_url(errors, p + ("url",), embed.get("url"), L.EMBED_URL_SCHEMES)
        fields = embed.get("fields")
        if fields is not None:
            if not isinstance(fields, list):
                errors.add(p + ("fields",), "LIST_TYPE_CONVERT", "Must be an array.")
            elif len(fields) > L.MAX_EMBED_FIELDS:
                errors.max_length(p + ("fields",), L.MAX_EMBED_FIELDS)
            else:
                for j, field in enumerate(fields):
                    fp = p + ("fields", j)
                    if not isinstance(field, dict):
                        errors.add(fp, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
                        continue
                    for key, limit in (("name", L.MAX_EMBED_FIELD_NAME), ("value", L.MAX_EMBED_FIELD_VALUE)):
                        val = field.get(key)
                        if val is None or _text(val).strip() == "":
                            errors.required(fp + (key,))
                        elif len(_text(val)) > limit:
                            errors.max_length(fp + (key,), limit)
        footer = embed.get("footer")
        if footer is not None:
            if not isinstance(footer, dict) or footer.get("text") is None or _text(footer.get("text")).strip() == "":
                errors.required(p + ("footer", "text"))
            else:
                if len(_text(footer["text"])) > L.MAX_EMBED_FOOTER_TEXT:
                    errors.max_length(p + ("footer", "text"), L.MAX_EMBED_FOOTER_TEXT)
                check_url(errors, p + ("footer", "icon_url"), footer.get("icon_url"), L.EMBED_IMAGE_URL_SCHEMES)
        author = embed.get("author")
        if author is not None:
            if not isinstance(author, dict) or author.get("name") is None or _text(author.get("name")).strip() == "":
                errors.required(p + ("author", "name"))
            else:
                if len(_text(author["name"])) > L.MAX_EMBED_AUTHOR_NAME:
                    errors.max_length(p + ("author", "name"), L.MAX_EMBED_AUTHOR_NAME)
                check_url(errors, p + ("author", "url"), author.get("url"), L.EMBED_URL_SCHEMES)
                check_url(errors, p + ("author", "icon_url"), author.get("icon_url"), L.EMBED_IMAGE_URL_SCHEMES)
        for key in ("image", "thumbnail"):
            media = embed.get(key)
            if media is not None:
                if not isinstance(media, dict) or not media.get("url"):
                    errors.required(p + (key, "url"))
                else:
                    check_url(errors, p + (key, "url"), media.get("url"), L.EMBED_IMAGE_URL_SCHEMES)
    if total > L.MAX_EMBED_TOTAL_CHARACTERS:
        errors.add(
            path,
            "MAX_EMBED_SIZE_EXCEEDED",
            f"Embed size exceeds maximum size of {L.MAX_EMBED_TOTAL_CHARACTERS}",
        )


def check_allowed_mentions(errors: FormErrors, path: Path, am: Any) -> None:
    if am is None:
        return
    if not isinstance(am, dict):
        errors.add(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return
    parse = am.get("parse") or []
    for i, item in enumerate(parse):
        if item not in ("roles", "users", "everyone"):
            errors.add(path + ("parse", i), "ENUM_TYPE_COERCE", f'Value "{item}" is not a valid enum value.')
    for kind in ("users", "roles"):
        ids = am.get(kind)
        if ids and kind in parse:
            errors.add(
                path,
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                f'parse:["{kind}"] and {kind}: [ids] are mutually exclusive.',
            )
        if ids and len(ids) > 100:
            errors.max_length(path + (kind,), 100)


def check_components(errors: FormErrors, path: Path, components: Any) -> None:
    if not components:
        return
    if not isinstance(components, list):
        errors.add(path, "LIST_TYPE_CONVERT", "Must be an array.")
        return
    if len(components) > L.MAX_ACTION_ROWS and all(isinstance(c, dict) and c.get("type") == 1 for c in components):
        errors.max_length(path, L.MAX_ACTION_ROWS)
    for i, row in enumerate(components):
        if not isinstance(row, dict):
            continue
        children = row.get("components") or []
        if row.get("type") == 1 and len(children) > L.MAX_COMPONENTS_PER_ROW:
            errors.max_length(path + (i, "components"), L.MAX_COMPONENTS_PER_ROW)
        for j, comp in enumerate(children):
            if not isinstance(comp, dict):
                continue
            cp = path + (i, "components", j)
            cid = comp.get("custom_id")
            if cid is not None and len(_text(cid)) > L.MAX_CUSTOM_ID_LENGTH:
                errors.max_length(cp + ("custom_id",), L.MAX_CUSTOM_ID_LENGTH)
            label = comp.get("label")
            if comp.get("type") == 2 and label is not None and len(_text(label)) > L.MAX_BUTTON_LABEL:
                errors.max_length(cp + ("label",), L.MAX_BUTTON_LABEL)
            if comp.get("type") == 2 and comp.get("style") != 5 and comp.get("style") != 6 and not cid:
                errors.required(cp + ("custom_id",))
            if comp.get("type") == 2 and comp.get("style") == 5:
                check_url(errors, cp + ("url",), comp.get("url"), ("http", "https", "discord"))


def check_username(errors: FormErrors, path: Path, username: Any) -> None:
    if username is None:
        return
    name = _text(username)
    if not (L.MIN_WEBHOOK_USERNAME <= len(name) <= L.MAX_WEBHOOK_USERNAME):
        errors.bad_length(path, L.MIN_WEBHOOK_USERNAME, L.MAX_WEBHOOK_USERNAME)
        return
    for bad in L.FORBIDDEN_WEBHOOK_USERNAME_SUBSTRINGS:
        if bad in name.lower():
            errors.add(path, "USERNAME_INVALID_CONTAINS", f'Username cannot contain "{bad}"')


def check_thread_name(errors: FormErrors, path: Path, name: Any) -> None:
    text = _text(name)
    if name is None:
        errors.required(path)
    elif not (L.MIN_THREAD_NAME <= len(text) <= L.MAX_THREAD_NAME):
        errors.bad_length(path, L.MIN_THREAD_NAME, L.MAX_THREAD_NAME)


def check_message_fields(errors: FormErrors, path: Path, body: Dict[str, Any], *, webhook: bool = False) -> None:
    """Validate the fields of a message create/edit body (no emptiness check)."""
    content = body.get("content")
    if content is not None:
        if not isinstance(content, str):
            content = str(content)
        if len(content) > L.MAX_CONTENT_LENGTH:
            errors.max_length(path + ("content",), L.MAX_CONTENT_LENGTH)
    check_embeds(errors, path + ("embeds",), body.get("embeds"))
    nonce = body.get("nonce")
    if nonce is not None:
        if isinstance(nonce, str) and len(nonce) > L.MAX_NONCE_LENGTH:
            errors.max_length(path + ("nonce",), L.MAX_NONCE_LENGTH)
        elif isinstance(nonce, int) and not isinstance(nonce, bool) and abs(nonce) >= 2**63:
            errors.add(path + ("nonce",), "NUMBER_TYPE_MAX", "int value should be less than or equal to 2^63-1.")
    check_allowed_mentions(errors, path + ("allowed_mentions",), body.get("allowed_mentions"))
    check_components(errors, path + ("components",), body.get("components"))
    stickers = body.get("sticker_ids")
    if stickers and len(stickers) > L.MAX_STICKERS_PER_MESSAGE:
        errors.max_length(path + ("sticker_ids",), L.MAX_STICKERS_PER_MESSAGE)
    if webhook:
        check_username(errors, path + ("username",), body.get("username"))
        check_url(errors, path + ("avatar_url",), body.get("avatar_url"), ("http", "https"))


def is_empty(body: Dict[str, Any], n_files: int) -> bool:
    content = body.get("content")
    return not (
        (content is not None and str(content) != "")
        or body.get("embeds")
        or n_files
        or body.get("attachments")
        or body.get("sticker_ids")
        or body.get("components")
        or body.get("poll")
    )


def validate_new_message(
    body: Any, *, path: Path = (), n_files: int = 0, webhook: bool = False
) -> Dict[str, Any]:
    """Full validation for a message that is about to be created. Raises ApiError."""
    if not isinstance(body, dict):
        if path:
            e = FormErrors()
            e.required(path)
            raise invalid_form_body(e.tree)
        raise ApiError(400, discord_error(50109, "The request body contains invalid JSON."))
    errors = FormErrors()
    check_message_fields(errors, path, body, webhook=webhook)
    errors.raise_if_any()
    if is_empty(body, n_files):
        raise empty_message()
    return body


_SNOWFLAKE_MENTION = re.compile(r"<@!?(\d{15,21})>")
_ROLE_MENTION = re.compile(r"<@&(\d{15,21})>")


def resolve_mentions(content: str, allowed: Optional[Dict[str, Any]], *, can_mention_everyone: bool):
    """Who a message would actually ping: (user ids, role ids, mention_everyone)."""
    users = [int(x) for x in _SNOWFLAKE_MENTION.findall(content or "")]
    roles = [int(x) for x in _ROLE_MENTION.findall(content or "")]
    wants_everyone = "@everyone" in (content or "") or "@here" in (content or "")
    if allowed is None:
        return users, roles, wants_everyone and can_mention_everyone
    parse = allowed.get("parse") or []
    allowed_users = {int(x) for x in allowed.get("users") or []}
    allowed_roles = {int(x) for x in allowed.get("roles") or []}
    users = [u for u in users if "users" in parse or u in allowed_users]
    roles = [r for r in roles if "roles" in parse or r in allowed_roles]
    return users, roles, wants_everyone and "everyone" in parse and can_mention_everyone
