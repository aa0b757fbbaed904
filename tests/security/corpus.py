"""Hostile inputs the security tests throw at Hone: markup for every place text is shown,
object URIs that try to leave the image bucket, URLs a server must never fetch."""

from __future__ import annotations

MARKUP = [
    "<script>window.__xss=1</script>",
    "<img src=x onerror=window.__xss=2>",
    '"><svg onload=window.__xss=3>',
    "'><iframe srcdoc='<b>x</b>'>",
    "javascript:window.__xss=4",
    "<b>bold</b> &amp; &lt;b&gt;",
    "{{7*7}} ${7*7} <%= 7*7 %>",
    "</textarea><style>*{}</style>",
    "\u202egnp.exe",
    '<a href="javascript:window.__xss=5">x</a>',
]
"""Strings that are markup if anything ever treats them as HTML; each fits a class name (64)."""

CLASS_NAMES = [m for m in MARKUP if len(m.strip()) <= 64]

ESCAPING_URIS = [
    "s3://hone-images/../hone-models/production.mar",
    "s3://hone-images/images/../../hone-models/x.png",
    "s3://hone-images//etc/passwd",
    "s3://hone-images/images/%2e%2e/%2e%2e/hone-models/x.png",
    "s3://hone-images/images/..%2f..%2fhone-models%2fx.png",
    "s3://hone-models/production.mar",
    "s3://HONE-IMAGES/x.png",
    "s3:///hone-images/x.png",
    "s3://hone-images",
    "s3://hone-images/",
]
"""Object URIs that must never reach an object outside the image bucket."""

FOREIGN_URLS = [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://127.0.0.1:8081/models",
    "http://127.0.0.1:9000/hone-images/images/x.png",
    "file:///etc/passwd",
    "gopher://127.0.0.1:5432/",
    "ftp://example.com/x.png",
    "//evil.example/x.png",
]
"""URLs a user could hand Hone; no server ever fetches a user-supplied URL."""
