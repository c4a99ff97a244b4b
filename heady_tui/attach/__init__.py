"""`heady attach`: a headless console serves what its query layer shows over a Unix socket, and
consoles on the same machine attach to it (docs/attach.md).

`wire` is the protocol (framing, limits, the shown state and its deltas), `service` the headless
side, `client` the attached side the UI reads through.
"""
