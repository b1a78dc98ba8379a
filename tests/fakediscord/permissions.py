"""Discord permission bits and the permission resolution algorithm.

Written from Discord's documented algorithm (base = @everyone | member roles,
administrator short-circuits, then @everyone overwrite, role overwrites, member
overwrite, then the implicit rules), independent of discord.py, so that what
REST enforces and what discord.py's ``channel.permissions_for(guild.me)``
computes from GUILD_CREATE can be checked against each other.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Union

FLAGS = {
    "create_instant_invite": 1 << 0,
    "kick_members": 1 << 1,
    "ban_members": 1 << 2,
    "administrator": 1 << 3,
    "manage_channels": 1 << 4,
    "manage_guild": 1 << 5,
    "add_reactions": 1 << 6,
    "view_audit_log": 1 << 7,
    "priority_speaker": 1 << 8,
    "stream": 1 << 9,
    "view_channel": 1 << 10,
    "send_messages": 1 << 11,
    "send_tts_messages": 1 << 12,
    "manage_messages": 1 << 13,
    "embed_links": 1 << 14,
    "attach_files": 1 << 15,
    "read_message_history": 1 << 16,
    "mention_everyone": 1 << 17,
    "use_external_emojis": 1 << 18,
    "view_guild_insights": 1 << 19,
    "connect": 1 << 20,
    "speak": 1 << 21,
    "mute_members": 1 << 22,
    "deafen_members": 1 << 23,
    "move_members": 1 << 24,
    "use_vad": 1 << 25,
    "change_nickname": 1 << 26,
    "manage_nicknames": 1 << 27,
    "manage_roles": 1 << 28,
    "manage_webhooks": 1 << 29,
    "manage_guild_expressions": 1 << 30,
    "use_application_commands": 1 << 31,
    "request_to_speak": 1 << 32,
    "manage_events": 1 << 33,
    "manage_threads": 1 << 34,
    "create_public_threads": 1 << 35,
    "create_private_threads": 1 << 36,
    "use_external_stickers": 1 << 37,
    "send_messages_in_threads": 1 << 38,
    "use_embedded_activities": 1 << 39,
    "moderate_members": 1 << 40,
    "view_creator_monetization_analytics": 1 << 41,
    "use_soundboard": 1 << 42,
    "create_guild_expressions": 1 << 43,
    "create_events": 1 << 44,
    "use_external_sounds": 1 << 45,
    "send_voice_messages": 1 << 46,
    "send_polls": 1 << 49,
    "use_external_apps": 1 << 50,
    "pin_messages": 1 << 51,
    "bypass_slowmode": 1 << 52,
}

# A few common alternative spellings (discord.py's names).
ALIASES = {
    "read_messages": "view_channel",
    "external_emojis": "use_external_emojis",
    "external_stickers": "use_external_stickers",
    "manage_permissions": "manage_roles",
    "manage_emojis": "manage_guild_expressions",
    "manage_expressions": "manage_guild_expressions",
    "use_voice_activation": "use_vad",
    "create_polls": "send_polls",
}

ALL = 0
for _v in FLAGS.values():
    ALL |= _v

globals().update({name.upper(): value for name, value in FLAGS.items()})

# Bits that have a meaning on a channel (can appear in overwrites); the rest are guild-wide.
GUILD_ONLY = (
    FLAGS["kick_members"]
    | FLAGS["ban_members"]
    | FLAGS["administrator"]
    | FLAGS["manage_guild"]
    | FLAGS["view_audit_log"]
    | FLAGS["view_guild_insights"]
    | FLAGS["change_nickname"]
    | FLAGS["manage_nicknames"]
    | FLAGS["manage_guild_expressions"]
    | FLAGS["moderate_members"]
    | FLAGS["view_creator_monetization_analytics"]
    | FLAGS["create_guild_expressions"]
)
ALL_CHANNEL = ALL & ~GUILD_ONLY

# Permissions that stop meaning anything once you cannot send messages.
_SEND_DEPENDENT = (
    FLAGS["send_tts_messages"] | FLAGS["mention_everyone"] | FLAGS["embed_links"] | FLAGS["attach_files"]
)

# What the fake's bot gets by default (via its managed role): everything an
# announcement bot needs and nothing more.
BOT_DEFAULT = (
    FLAGS["view_channel"]
    | FLAGS["send_messages"]
    | FLAGS["send_messages_in_threads"]
    | FLAGS["create_public_threads"]
    | FLAGS["embed_links"]
    | FLAGS["attach_files"]
    | FLAGS["read_message_history"]
    | FLAGS["add_reactions"]
    | FLAGS["use_external_emojis"]
    | FLAGS["manage_webhooks"]
)

# Roughly what a fresh guild gives @everyone.
EVERYONE_DEFAULT = (
    FLAGS["create_instant_invite"]
    | FLAGS["add_reactions"]
    | FLAGS["stream"]
    | FLAGS["view_channel"]
    | FLAGS["send_messages"]
    | FLAGS["embed_links"]
    | FLAGS["attach_files"]
    | FLAGS["read_message_history"]
    | FLAGS["mention_everyone"]
    | FLAGS["use_external_emojis"]
    | FLAGS["connect"]
    | FLAGS["speak"]
    | FLAGS["use_vad"]
    | FLAGS["change_nickname"]
    | FLAGS["use_application_commands"]
    | FLAGS["request_to_speak"]
    | FLAGS["create_public_threads"]
    | FLAGS["create_private_threads"]
    | FLAGS["use_external_stickers"]
    | FLAGS["send_messages_in_threads"]
    | FLAGS["use_embedded_activities"]
    | FLAGS["send_voice_messages"]
    | FLAGS["send_polls"]
    | FLAGS["use_external_apps"]
)

PermLike = Union[int, str, Iterable[str], None]


def to_bits(perms: PermLike) -> int:
    """Accept an int bitfield, a name, or an iterable of names ('send_messages', 'SEND_MESSAGES')."""
    if perms is None:
        return 0
    if isinstance(perms, bool):
        raise TypeError("permissions must be an int or names, not bool")
    if isinstance(perms, int):
        return perms
    if isinstance(perms, str):
        perms = [perms]
    value = 0
    for name in perms:
        key = str(name).lower()
        key = ALIASES.get(key, key)
        try:
            value |= FLAGS[key]
        except KeyError:
            raise ValueError(f"unknown permission name {name!r}") from None
    return value


def names(bits: int) -> set[str]:
    return {name for name, value in FLAGS.items() if bits & value}


def compute_base(everyone_perms: int, role_perms: Iterable[int], *, is_owner: bool) -> int:
    if is_owner:
        return ALL
    base = everyone_perms
    for p in role_perms:
        base |= p
    if base & FLAGS["administrator"]:
        return ALL
    return base


def compute_overwrites(
    base: int,
    overwrites: Iterable[Mapping],
    *,
    guild_id: int,
    member_id: int,
    member_role_ids: Iterable[int],
) -> int:
    """Apply channel overwrites to guild-level permissions (Discord's documented order)."""
    if base & FLAGS["administrator"]:
        return ALL
    overwrites = list(overwrites)
    role_ids = {int(r) for r in member_role_ids}
    perms = base
    for ow in overwrites:
        if int(ow["type"]) == 0 and int(ow["id"]) == guild_id:
            perms &= ~int(ow["deny"])
            perms |= int(ow["allow"])
    allow = deny = 0
    for ow in overwrites:
        if int(ow["type"]) == 0 and int(ow["id"]) != guild_id and int(ow["id"]) in role_ids:
            allow |= int(ow["allow"])
            deny |= int(ow["deny"])
    perms &= ~deny
    perms |= allow
    for ow in overwrites:
        if int(ow["type"]) == 1 and int(ow["id"]) == member_id:
            perms &= ~int(ow["deny"])
            perms |= int(ow["allow"])
    return perms


def apply_implicit(perms: int, *, thread: bool = False) -> int:
    """Implicit rules: no VIEW_CHANNEL -> nothing; can't send -> can't embed/attach/mention/tts."""
    if perms & FLAGS["administrator"]:
        return ALL
    send_bit = FLAGS["send_messages_in_threads"] if thread else FLAGS["send_messages"]
    if not perms & send_bit:
        perms &= ~_SEND_DEPENDENT
    if not perms & FLAGS["view_channel"]:
        perms &= ~ALL_CHANNEL
    return perms
