"""Adoption by content: what files a remote version holds, read from its zip downloaded into
`.reconcile/downloads/` and fingerprinted by exactly the rules of a local layer (paths, bytes,
executable bits, links; not order, timestamps or other mode bits).

Shell: the download is the store's (only `aws` does network), the reading of a zip into
entries and their fingerprint is `content`'s; this module only ties them together, keeps no
download once compared, and turns every failure into a `model.RemoteContent` with a problem
(a version that cannot be compared is simply not adopted). It decides nothing.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from reconciler import content as layer_content
from reconciler import errors, model, ports
from reconciler.content import statcache

# The largest zip downloaded: a layer's content is at most Lambda's unzipped limit, and
# a zip of it is not larger but for its headers.
MAX_DOWNLOAD_BYTES = model.MAX_UNZIPPED_BYTES + 16 * 1024 * 1024


def remote_content(*, store: ports.LayerStore, spec: model.LayerSpec, region: str,
                   version: int, downloads_dir: Path) -> model.RemoteContent:
    """Download `version` of `spec`'s layer in `region` and fingerprint its files."""
    downloads_dir.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f"{spec.name}-v{version}-", suffix=".zip",
                                    dir=downloads_dir)
    os.close(handle)
    path = Path(name)
    received = 0
    try:
        try:
            received = store.download_code(region=region, layer_name=spec.name,
                                           version=version, destination=path,
                                           max_bytes=MAX_DOWNLOAD_BYTES)
        except errors.AwsError as error:
            return model.RemoteContent(version=version, downloaded_bytes=0, fingerprint=None,
                                       problem=error.message)
        # Read as a zip to normalize, with no prefix and no exclude: its entries are its
        # members, by the same checks and digests as the local content's.
        spec_content = model.ContentSpec(kind=model.SourceKind.ZIP, zip=path.name,
                                         normalize=True)
        try:
            found = layer_content.identify(spec_content, base_dir=downloads_dir,
                                           label=f"layers.{spec.key} (version {version} in "
                                                 f"{region})",
                                           cache=statcache.StatCache.load(
                                               downloads_dir / "none.json"))
        except errors.ContentError as error:
            return model.RemoteContent(version=version, downloaded_bytes=received,
                                       fingerprint=None, problem=error.message)
        return model.RemoteContent(version=version, downloaded_bytes=received,
                                   fingerprint=found.fingerprint)
    finally:
        path.unlink(missing_ok=True)
