"""The status page: a small web app for operators, served by ``beamflow status-page`` (and by ``beamflow up``).

Recent scans with a timeline per stage, one scan's detail (copies and checksums, archive bundle, catalog link,
holds and their expiry, prunes, failures, history), the dead letters with a replay button, and live updates
over Server-Sent Events. It reads what the operator commands read (the ``LEDGER`` bucket and the
``DEADLETTERS`` stream) and watches the streams; it writes nothing but replays.

Modules: ``timeline`` (a scan's stages from its ledger record), ``views`` (the JSON shapes), ``wire`` (HTTP
over asyncio streams), ``pages`` (the HTML shell around the data), ``live`` (the live-update feed), ``app``
(the routes), ``cli`` (the command); ``static/`` holds the page's HTML, script and style.
"""
