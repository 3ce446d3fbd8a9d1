"""Engagement tracking in an email's HTML: its web links through the click redirect and a
pixel at its end (:mod:`shared.engagement`).

Only when its template asks (``trackOpens``, ``trackClicks``), tracking is configured
(``TRACKING_SECRET`` and ``PUBLIC_BASE_URL``) and the message is neither critical nor sent
``transactional``: a security alert, a password reset or a receipt is nobody's campaign. The
text part is left as it is: a reader of plain text sees where each link goes, and there is no
pixel to load.
"""

from __future__ import annotations

import re
from dataclasses import replace
from html import escape, unescape

from shared import engagement
from shared.config import Settings
from shared.payloads import EmailPayload
from workers.delivery.attempt import Delivery

#: An ``<a>`` tag's href, quoted either way.
_LINK = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)


def tracked(settings: Settings, delivery: Delivery, email: EmailPayload) -> EmailPayload:
    """``email``, the content of ``delivery``, with its HTML rewritten as its template asks;
    as it is for a message sent transactional."""
    html = email.html
    if not html or not email.tracking or delivery.transactional:
        return email
    message_id = delivery.id
    if "clicks" in email.tracking:

        def through_redirect(found: re.Match[str]) -> str:
            url = unescape(found.group(3)).strip()
            if not url.lower().startswith(("http://", "https://")):
                return found.group(0)  # mailto:, tel:, #anchors stay as they are
            redirect = engagement.link(settings, engagement.Mark(message_id, "click", url))
            return f"{found.group(1)}{found.group(2)}{escape(redirect)}{found.group(2)}"

        html = _LINK.sub(through_redirect, html)
    if "opens" in email.tracking:
        src = escape(engagement.link(settings, engagement.Mark(message_id, "open")))
        pixel = f'<img src="{src}" width="1" height="1" alt="" style="display:none">'
        end = html.lower().rfind("</body>")
        html = html[:end] + pixel + html[end:] if end >= 0 else html + pixel
    return replace(email, html=html)
