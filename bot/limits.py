"""Every Discord limit Herald relies on, in one place.

Values are Discord's documented limits for the bot API (v10). Nothing else in
Herald writes these numbers down; import them from here.
"""

from __future__ import annotations

# Messages
MESSAGE_CONTENT = 2000
EMBEDS_PER_MESSAGE = 10
NONCE_LENGTH = 25
ALLOWED_MENTIONS_ROLES = 100  # role ids in allowed_mentions.roles

# Embeds
EMBED_TITLE = 256
EMBED_DESCRIPTION = 4096
EMBED_FIELDS = 25
EMBED_FIELD_NAME = 256
EMBED_FIELD_VALUE = 1024
EMBED_FOOTER_TEXT = 2048
EMBED_AUTHOR_NAME = 256
EMBED_TOTAL = 6000
EMBED_URL = 2048  # embed url, image.url, thumbnail.url, author.url: longer ones are refused

# Threads and forum posts
THREAD_NAME = 100

# Webhooks
WEBHOOK_USERNAME = 80

# Interactions
INTERACTION_RESPONSE_SECONDS = 3.0
AUTOCOMPLETE_CHOICES = 25
CHOICE_NAME = 100
CHOICE_VALUE = 100

# Rate limits: Discord allows 50 requests/s globally; stay far below it.
GLOBAL_REQUESTS_PER_SECOND = 50
