"""Every Discord limit the fake enforces, in one place.

These numbers are written down here on purpose instead of being imported from
Herald's own limits module: the fake must check the project independently, so
a wrong constant in the project shows up as a 400 from the fake instead of
being silently agreed with.
"""

# --- message content --------------------------------------------------------
MAX_CONTENT_LENGTH = 2000
MAX_EMBEDS_PER_MESSAGE = 10
MAX_NONCE_LENGTH = 25
MAX_STICKERS_PER_MESSAGE = 3
MAX_ATTACHMENTS_PER_MESSAGE = 10
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024  # default upload limit for bots (10 MiB)

# --- embeds -----------------------------------------------------------------
MAX_EMBED_TITLE = 256
MAX_EMBED_DESCRIPTION = 4096
MAX_EMBED_FIELDS = 25
MAX_EMBED_FIELD_NAME = 256
MAX_EMBED_FIELD_VALUE = 1024
MAX_EMBED_FOOTER_TEXT = 2048
MAX_EMBED_AUTHOR_NAME = 256
MAX_EMBED_TOTAL_CHARACTERS = 6000  # title+description+field names/values+footer text+author name, all embeds
MAX_EMBED_COLOR = 0xFFFFFF
MAX_URL_LENGTH = 2048
EMBED_URL_SCHEMES = ("http", "https")
EMBED_IMAGE_URL_SCHEMES = ("http", "https", "attachment")

# --- components (legacy action rows) ------------------------------------------
MAX_ACTION_ROWS = 5
MAX_COMPONENTS_PER_ROW = 5
MAX_CUSTOM_ID_LENGTH = 100
MAX_BUTTON_LABEL = 80

# --- threads / forum posts --------------------------------------------------
MIN_THREAD_NAME = 1
MAX_THREAD_NAME = 100
THREAD_AUTO_ARCHIVE_DURATIONS = (60, 1440, 4320, 10080)

# --- webhooks ---------------------------------------------------------------
MIN_WEBHOOK_USERNAME = 1
MAX_WEBHOOK_USERNAME = 80
FORBIDDEN_WEBHOOK_USERNAME_SUBSTRINGS = ("discord", "clyde")
WEBHOOK_TOKEN_LENGTH = 68

# --- application commands ---------------------------------------------------
MAX_COMMAND_NAME = 32
MAX_COMMAND_DESCRIPTION = 100
MAX_COMMAND_OPTIONS = 25
MAX_COMMAND_CHOICES = 25
MAX_GLOBAL_CHAT_INPUT_COMMANDS = 100
COMMAND_NAME_PATTERN = r"^[-_\w]{1,32}$"  # Discord: ^[-_\p{L}\p{N}...]{1,32}$, lowercase where possible

# --- interactions -----------------------------------------------------------
INTERACTION_RESPONSE_DEADLINE = 3.0  # seconds to send the initial callback
INTERACTION_TOKEN_LIFETIME = 15 * 60.0  # seconds the token works for followups/edits
MAX_AUTOCOMPLETE_CHOICES = 25
MAX_CHOICE_NAME = 100
MAX_CHOICE_STRING_VALUE = 100
ATTACHMENT_SIZE_LIMIT = MAX_ATTACHMENT_BYTES  # sent as attachment_size_limit in INTERACTION_CREATE

# --- nonce de-duplication ---------------------------------------------------
NONCE_DEDUPE_WINDOW = 180.0  # "a few minutes"

# --- rate limits (count, per seconds) ---------------------------------------
DEFAULT_MESSAGE_RATE = (5, 5.0)  # message creation, per channel / per webhook
DEFAULT_ROUTE_RATE = (50, 1.0)  # any other route, per route + major parameter
DEFAULT_GLOBAL_RATE = 50  # requests per second per bot token

# --- gateway ----------------------------------------------------------------
DEFAULT_HEARTBEAT_INTERVAL_MS = 41250
API_VERSION = 10

# --- messages returned by GET /channels/{id}/messages -------------------------
DEFAULT_MESSAGE_FETCH_LIMIT = 50
MAX_MESSAGE_FETCH_LIMIT = 100
