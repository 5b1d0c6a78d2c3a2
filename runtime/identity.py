"""Gate identity: which track is which account, from the entry scans alone (no faces).

An entry scan names the shopper who crosses the entry gate at that moment: the scan waits a
moment (``scan_settle_s``) until the one crossing has been seen often enough to be a track, then
goes to the unnamed track that stood nearest the gate when the scan came. People who walk in right
behind a scan without one of their own (``group_window_s``) are its group and share its account.
A group member is someone who never scans: a shopper who walks in a second behind another and
scans too may have been taken into the other's group already, and their own scan takes them back.
People pass a gate in single file, so a member first appears behind the one who scanned, never
beside or ahead of them: a track that does is a ghost of that shopper (a second floor point from a
camera that placed them wrong), and joins nobody.
The tracker keeps the accounts on its tracks; this stage only tells it, through
``WorldTracker.assign``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from runtime.config import IdentityConfig
from runtime.store import StoreSpec
from runtime.tracking import TrackView, WorldTracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scan:
    """An entry scan still looking for its shopper."""

    t: float
    gate_id: str
    account_id: str


class GateIdentity:
    def __init__(self, store: StoreSpec, cfg: IdentityConfig, group_window_s: float, walked_m: float):
        self.store, self.cfg = store, cfg
        self.group_window_s, self.walked_m = group_window_s, walked_m
        self._scans: list[Scan] = []
        self._groups: list[tuple[float, str]] = []     # (open until t, account): who may still join
        self._members: dict[int, str] = {}              # track → the account it shares as a group member
        self._resumes: dict[str, tuple] = {}            # account → (x, y, waiting since t or None): after a restart
        self.unmatched_scans = 0
        self.resumed = 0

    def resume(self, account: str, xy: tuple[float, float]) -> None:
        """After a restart: ``account`` was last shown at ``xy``; the first unnamed track seen near
        there takes it (the shopper is re-acquired without a new scan)."""
        self._resumes[account] = (float(xy[0]), float(xy[1]), None)

    def _resume(self, t: float, tracker: WorldTracker) -> list[tuple[int, str]]:
        out = []
        taken = {k.account for k in tracker.snapshot() if k.account is not None and not k.closed}
        for account, (x, y, since) in list(self._resumes.items()):
            since = t if since is None else since
            if account in taken:          # named again another way (a scan)
                del self._resumes[account]
                continue
            near = sorted((float(((k.xy[0] - x) ** 2 + (k.xy[1] - y) ** 2) ** 0.5), k.id) for k in tracker.snapshot()
                          if k.account is None and k.confirmed and not k.closed)
            near = [(d, i) for d, i in near if d <= self.cfg.resume_radius_m]
            if near:
                tracker.assign(near[0][1], account)
                out.append((near[0][1], account))
                del self._resumes[account]
                self.resumed += 1
                log.info("after the restart: track %d is %s again (%.1f m from where it was last shown)",
                         near[0][1], account, near[0][0])
            elif t - since > self.cfg.resume_wait_s:
                del self._resumes[account]
                log.warning("after the restart: %s was not seen again near (%.1f, %.1f) m", account, x, y)
            else:
                self._resumes[account] = (x, y, since)
        return out

    def entry(self, t: float, gate_id: str, account_id: str) -> None:
        self._scans.append(Scan(t, gate_id, account_id))
        self._groups.append((t + self.group_window_s, account_id))

    def update(self, t: float, tracker: WorldTracker) -> list[tuple[int, str]]:
        """Give each pending scan the unnamed track nearest its gate at the scan, and group members
        their group's account; the (track, account) pairs assigned now."""
        cfg = self.cfg
        out: list[tuple[int, str]] = self._resume(t, tracker) if self._resumes else []
        keep = []
        for s in self._scans:
            near = self.near_gate(tracker.snapshot(), s.gate_id, t, cfg.scan_radius_m, born_after=s.t - cfg.scan_born_s,
                                  born_before=s.t + cfg.scan_settle_s, at=s.t) if t >= s.t + cfg.scan_settle_s else []
            if near:
                k = near[0][1]
                if k.id in self._members:
                    log.info("entry scan of %s at %.1f s: track %d had joined %s's group, and is %s", s.account_id,
                             s.t, k.id, self._members.pop(k.id), s.account_id)
                tracker.assign(k.id, s.account_id)
                out.append((k.id, s.account_id))
            elif t - s.t < cfg.scan_wait_s:
                keep.append(s)
            else:
                self.unmatched_scans += 1
                log.info("entry scan of %s at %.1f s: nobody seen at gate %s, left unmatched", s.account_id, s.t, s.gate_id)
        self._scans = keep
        self._groups = [(until, a) for until, a in self._groups if until >= t]
        if not self._scans and self._groups:
            entry = next((g.id for g in self.store.gates if g.kind == "entry"), None)
            until, account = self._groups[-1]
            if entry is not None:
                tracks = tracker.snapshot()
                for _, k in self.near_gate(tracks, entry, t, cfg.group_radius_m, first=True):
                    if k.moved_m >= self.walked_m and k.first_t >= until - self.group_window_s - cfg.group_slack_s \
                            and self._behind(k, account, entry, tracks):
                        tracker.assign(k.id, account)
                        self._members[k.id] = account
                        out.append((k.id, account))
        return out

    def _behind(self, k: TrackView, account: str, gate_id: str, tracks: tuple[TrackView, ...]) -> bool:
        """``k`` was first seen behind every track the account's own scan named: after them, and
        nearer the gate than they were then, give or take ``group_behind_m`` (one seen before the
        one who scanned was ahead of them in the file)."""
        g = self.store.gate_by_id(gate_id)
        depth = g.distance_to(k.first_xy)
        return all(j.first_t <= k.first_t and depth <= g.distance_to(j.position_at(k.first_t)) + self.cfg.group_behind_m
                   for j in tracks if j.account == account and j.id != k.id and j.id not in self._members
                   and not j.closed)

    def clear(self) -> None:
        """Without cameras there is nobody to name: pending scans are dropped."""
        self._scans.clear()

    def near_gate(self, tracks: tuple[TrackView, ...], gate_id: str, t: float, radius_m: float, first: bool = False,
                  born_after: float | None = None, born_before: float | None = None,
                  at: float | None = None) -> list[tuple[float, TrackView]]:
        """Confirmed, recently seen tracks without an account of their own (none, or a group's) near a
        gate, nearest first: where they are now, where they were first seen (``first``), or where they were at time ``at`` (the scan:
        the one who scanned was at the gate then); first seen between ``born_after`` and ``born_before`` if given
        (the one who scanned is seen within ``scan_settle_s`` of the scan: someone first seen later came after)."""
        g = self.store.gate_by_id(gate_id)
        out = []
        for k in tracks:
            if (k.closed or (k.account is not None and k.id not in self._members) or not k.confirmed or t - k.t > self.cfg.seen_within_s
                    or (born_after is not None and k.first_t < born_after)
                    or (born_before is not None and k.first_t > born_before)):
                continue
            p = k.first_xy if first else (k.position_at(at) if at is not None else k.xy)
            d = g.distance_to(p)
            if d <= radius_m:
                out.append((d, k))
        return sorted(out, key=lambda p: p[0])
