"""Creator channels: a creator's feeds, podcasts, sitemaps, sites and video pages, synced into the index.

Read in data-flow order: `http.py` (every request: SSRF guard, robots.txt, politeness, limits, validators),
`types.py` (the connector contract: items with stable keys and change tokens, fetched into content),
`content.py` (safe XML, a page's main text, transcripts), the connectors (`feeds.py` for feeds and podcasts,
`sitemaps.py` for sitemaps and site crawls, `video.py` for yt-dlp captions) with `connectors.py` (by kind, and
sniffing a URL's kind), then `sync.py` (one sync through ingest's own hash gate, and the due channels' pass).
The channels themselves live in SQL (backend/curation/channels_store.py); `lorechat channels` is
pipeline/channels_cli.py.
"""
