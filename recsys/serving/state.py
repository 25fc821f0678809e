"""What an API process keeps in memory, and how it is kept fresh without a request ever waiting.

One immutable :class:`Snapshot` (catalogue, play and feedback counts, the popularity list, the
version in memory) sits behind one reference. A request reads the reference once and works on
that snapshot; a change builds a new snapshot and swaps the reference. A background thread
LISTENs on ``recsys_versions`` (a version was activated), ``recsys_catalogue`` (a statement
changed ``slots``) and ``recsys_experiments`` (an experiment started or stopped), reloads off the
request path, and every ``serving_refresh_seconds`` refreshes
catalogue and counts in case a notification was lost.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np

from recsys.db import catalogue as catalogue_db
from recsys.db import experiment_rollups, training_data, versions
from recsys.db import experiments as experiments_db
from recsys.db.engine import ping
from recsys.db.listener import Listener
from recsys.db.versions import SlotVectors
from recsys.errors import RecsysError
from recsys.experiments import ITEMKNN, Experiment
from recsys.index import set_threads
from recsys.serving.candidates import ExploreBank, explore_pool
from recsys.serving.catalogue import Catalogue, SlotStats, popularity_order
from recsys.serving.itemknn import ItemNeighbours
from recsys.serving.model import ServingModel, build_serving_model
from recsys.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    catalogue: Catalogue
    stats: SlotStats
    popular: np.ndarray  # active keys, most played first
    model: ServingModel | None  # None: no active version, or not loaded yet
    catalogue_loaded: bool
    experiment: Experiment | None = None  # the running experiment (None: none runs)
    arm_models: Mapping[int, ServingModel] = field(default_factory=dict)
    """The versions the experiment's arms rank with, other than the active one (``model``), by id:
    those in memory yet (an arm whose version is not is served through pgvector meanwhile)."""
    experiment_read: bool = False
    """Whether ``experiment`` has been read from the database: until then no list is made (a list
    made outside a running experiment would give its player a second arm)."""
    itemknn: ItemNeighbours | None = None
    """The item-kNN neighbours of an ``itemknn`` arm (of the active version's training window),
    built off the request path while such an arm runs; None otherwise, or not built yet."""
    # Per-snapshot work that lists would otherwise repeat, made on first use (by market).
    _explore_banks: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    def model_of(self, version_id: int) -> ServingModel | None:
        """The version's model in this snapshot (the active one or an arm's), or None."""
        if self.model is not None and self.model.version_id == version_id:
            return self.model
        return self.arm_models.get(version_id)

    def missing_versions(self) -> list[int]:
        """The running experiment's versions not in memory in this snapshot, ascending."""
        if self.experiment is None:
            return []
        return sorted(v for v in self.experiment.version_ids() if self.model_of(v) is None)

    def needs_itemknn(self) -> bool:
        """The running experiment has an ``itemknn`` arm."""
        return self.experiment is not None and any(a.strategy == ITEMKNN for a in self.experiment.arms)

    def explore_bank(self, market: str | None, max_impressions: int) -> ExploreBank:
        """Exploration's draws in this snapshot (``recsys.serving.candidates.ExploreBank``), one bank
        per market, its pool made on first use."""
        bank = self._explore_banks.get((market, max_impressions))
        if bank is None:
            bank = ExploreBank(explore_pool(self.catalogue, self.stats, market, max_impressions), self.stats)
            self._explore_banks[(market, max_impressions)] = bank
        return bank


@dataclass(frozen=True)
class _Version:
    """A loaded version's own rows, kept to rebuild provisional rows when new slots arrive."""

    vectors: SlotVectors
    weights: dict | None
    new_slots: tuple  # the catalogue slots it had no row for, when last built (their SlotInfo)


class ServingState:
    """The snapshot reference and the machinery that replaces it."""

    def __init__(self, settings: Settings, engine, url: str, metrics) -> None:
        self.settings = settings
        self.engine = engine
        self.url = url
        self.metrics = metrics
        empty = Catalogue.empty()
        self.snapshot = Snapshot(empty, SlotStats(), np.zeros(0, dtype=np.int64), None, False)
        self.last_error: str | None = None
        # Exploration draws when ``ranking.explore_seed`` is unset. One per process (each worker builds
        # its own state after the fork); a Generator locks its bit generator around each draw, so the
        # threads serving lists may share it.
        self.rng = np.random.default_rng()
        self._version: _Version | None = None
        self._no_active = False  # the database has no active version (not: it is loading)
        self._arms: dict[int, _Version] = {}  # the rows of ``snapshot.arm_models``, by version
        # Guards read-modify-write of ``snapshot``. Requests never take it (they read the reference
        # once); a catalogue change holds it while it rebuilds the model's provisional rows and FAISS
        # index (milliseconds for a few hundred slots, seconds at 10^4), which only delays other reloads.
        self._swap = threading.Lock()
        self._catalogue_lock = threading.Lock()  # one catalogue load at a time: the last load is the newest
        self._version_lock = threading.Lock()  # one version load at a time
        self._stats_at = float("-inf")
        self._listener: Listener | None = None
        set_threads(1)

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Load the catalogue now (fast) when the database answers, then LISTEN and load the
        version in the background; the API serves meanwhile (pgvector fallback)."""
        try:
            self.refresh_catalogue()
            self.read_experiment()  # before any list: a player's arm never depends on load order
        except Exception as exc:
            # The database may be down at start: the API starts anyway (readyz says why) and the
            # listener loads everything again on each (re)connection.
            self._failed("catalogue", exc)
        self._listener = Listener(
            self.url,
            (versions.CHANNEL, catalogue_db.CHANNEL, experiments_db.CHANNEL),
            self._on_notifies,
            on_connect=lambda first: self.reload_all(),
            on_idle=self._on_idle,
            idle_seconds=max(self.settings.serving.refresh_seconds, 0.5),
            debounce_seconds=0.05,  # the statements of one import or activation: one reload
        ).start()

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.stop(timeout=5)

    def _on_notifies(self, notifies) -> None:
        channels = {n.channel for n in notifies}
        if catalogue_db.CHANNEL in channels:
            self.refresh_catalogue()
        if versions.CHANNEL in channels:
            self.load_active_version()
        if versions.CHANNEL in channels or experiments_db.CHANNEL in channels:
            self.load_experiment()

    def _on_idle(self) -> None:
        self.refresh_catalogue()
        if time.monotonic() - self._stats_at >= self.settings.serving.stats_refresh_seconds:
            self.refresh_stats()
        if self.snapshot.model is None:
            self.load_active_version()
        self.load_experiment()  # one query when nothing changed: a lost notification costs one refresh
        self.refresh_experiment_rollup()

    def refresh_experiment_rollup(self) -> None:
        """Fold the running experiment's new lists, feedback and play into its rollup
        (``recsys.db.experiment_rollups``) here, off the request path, every idle period: a read then
        finds at most that period's changes to fold in, not a busy hour's (the experiments page's
        first load after 12,000 unread lists took 1.2-2.2 s at 10^7 items). Replicas take turns on
        the rollup's row lock; with nothing new it is two index reads."""
        experiment = self.snapshot.experiment
        if experiment is None:
            return
        with self.engine.begin() as conn:
            experiment_rollups.refresh(conn, experiment.id, self.settings.realtime.threshold_seconds)

    def reload_all(self) -> None:
        self.refresh_catalogue()
        self.read_experiment()  # the arms first (cheap): versions load after, served by pgvector meanwhile
        self.refresh_stats()
        self.load_active_version()
        self.load_experiment()

    def _failed(self, what: str, exc: Exception) -> None:
        self.last_error = f"loading the {what} failed: {exc}"
        log.warning("%s", self.last_error)

    # --- reloads (background thread, or an ingest/admin request on this replica) ---------------------

    def refresh_catalogue(self) -> None:
        with self._catalogue_lock:
            catalogue = Catalogue.from_rows(catalogue_db.load_slots(self.engine))
            with self._swap:
                model = self._rebuilt_for(catalogue)
                snap = self.snapshot
                arm_models = {}
                for version_id, model_of_arm in snap.arm_models.items():
                    self._arms[version_id], arm_models[version_id] = self._rebuilt(
                        self._arms[version_id], model_of_arm, catalogue)
                self.snapshot = dataclasses.replace(
                    snap,
                    catalogue=catalogue,
                    popular=popularity_order(catalogue, snap.stats),
                    model=model,
                    arm_models=arm_models,
                    catalogue_loaded=True,
                )
            if model is not None and model is not snap.model:  # provisional rows for new slots
                self.metrics.set_version(model.version_id, model.slot_keys.size)

    def refresh_stats(self) -> None:
        self._stats_at = time.monotonic()
        stats = SlotStats.from_counts(catalogue_db.load_counts(self.engine, self.settings.serving.popularity_days))
        with self._swap:
            snap = self.snapshot
            self.snapshot = dataclasses.replace(snap, stats=stats, popular=popularity_order(snap.catalogue, stats))

    def load_active_version(self) -> None:
        """Build the active version's snapshot off the request path and swap it in; no active
        version empties the model (lists fall back to popularity)."""
        with self._version_lock:
            active = versions.active_version(self.engine)
            self._no_active = active is None
            if active is None:
                with self._swap:
                    self._keep_for_arms(self.snapshot.model)
                    self._version = None
                    self.snapshot = dataclasses.replace(self.snapshot, model=None)
                self.metrics.set_version(None, 0)
                return
            current = self.snapshot.model
            if current is not None and current.version_id == active.id:
                return
            with self._swap:  # an arm's version promoted: it is in memory already
                promoted = self.snapshot.arm_models.get(active.id)
                if promoted is not None:
                    self._keep_for_arms(self.snapshot.model)
                    self._version = self._arms[active.id]
                    self.snapshot = dataclasses.replace(self.snapshot, model=promoted)
            if promoted is not None:
                self.metrics.set_version(promoted.version_id, promoted.slot_keys.size)
                self.last_error = None
                log.info("serving version %d: an experiment arm's, already in memory", promoted.version_id)
                return
            started = time.perf_counter()
            try:
                catalogue = self.snapshot.catalogue
                loaded = self._load(active.id, catalogue)
                model = self._build(loaded, catalogue)
            except (RecsysError, ValueError) as exc:  # ValueError: a stored config this code cannot read
                self._failed(f"active version {active.id}", exc)
                return
            with self._swap:
                if self.snapshot.catalogue is not catalogue:  # changed while building: rows for new slots
                    loaded, model = self._rebuilt(loaded, model, self.snapshot.catalogue)
                self._keep_for_arms(self.snapshot.model)
                self._version = loaded
                self.snapshot = dataclasses.replace(self.snapshot, model=model)
            seconds = time.perf_counter() - started
            self.metrics.set_version(model.version_id, model.slot_keys.size, build_seconds=seconds)
            self.last_error = None
            log.info(
                "serving version %d: %d slots (%d provisional) indexed with %r in %.2f s",
                model.version_id, model.slot_keys.size, int(model.provisional.sum()),
                self.settings.serving.index_factory, seconds,
            )

    def _keep_for_arms(self, model: ServingModel | None) -> None:
        """Under ``_swap``, before the active model is replaced: keep it as an arm's model when the
        running experiment still ranks with it (no reload, no moment without it)."""
        snap = self.snapshot
        if model is None or self._version is None or snap.experiment is None:
            return
        if model.version_id in snap.experiment.version_ids() and model.version_id not in snap.arm_models:
            self._arms[model.version_id] = self._version
            self.snapshot = dataclasses.replace(snap, arm_models={**snap.arm_models, model.version_id: model})

    def read_experiment(self) -> Experiment | None:
        """Read the running experiment and swap it in, in one step, when it changed: from then on
        every list takes its player's arm and the arm's version. The arms' versions already in
        memory stay; the others are loaded by :meth:`load_experiment` and served through pgvector
        until then (the way the active version is served before its index loads)."""
        experiment = experiments_db.running(self.engine)
        with self._swap:
            snap = self.snapshot
            if snap.experiment_read and experiment == snap.experiment:
                return experiment
            wanted = set() if experiment is None else experiment.version_ids()
            kept = {v: m for v, m in snap.arm_models.items() if v in wanted}
            self._arms = {v: self._arms[v] for v in kept}
            self.snapshot = dataclasses.replace(snap, experiment=experiment, arm_models=kept, experiment_read=True)
            if not self.snapshot.needs_itemknn():
                self.snapshot = dataclasses.replace(self.snapshot, itemknn=None)
        if experiment is not None:
            log.info("experiment %r: arms %s", experiment.name,
                     ", ".join(f"{a.name}={a.version_label}:{a.weight}" for a in experiment.arms))
        return experiment

    def load_experiment(self) -> None:
        """Read the running experiment (:meth:`read_experiment`), then load the versions its arms
        need that are not in memory, off the request path, and add them to the snapshot when the
        experiment is still the same. A version that cannot be loaded leaves its arm served through
        pgvector, and ``/readyz`` answers 503 with ``last_error``."""
        experiment = self.read_experiment()
        if experiment is None:
            return
        if self.snapshot.needs_itemknn():
            with self._version_lock:
                try:
                    self._build_itemknn(experiment)
                except (RecsysError, ValueError) as exc:
                    self._failed(f"item-kNN of experiment {experiment.name!r}", exc)
        with self._version_lock:
            snap = self.snapshot
            wanted = snap.missing_versions()
            if not wanted:
                return
            catalogue = snap.catalogue
            loaded, models = {}, {}
            try:
                for version_id in wanted:
                    loaded[version_id] = self._load(version_id, catalogue)
                    models[version_id] = self._build(loaded[version_id], catalogue)
            except (RecsysError, ValueError) as exc:
                self._failed(f"versions of experiment {experiment.name!r}", exc)
                return
            with self._swap:
                snap = self.snapshot
                if snap.experiment != experiment:  # stopped or replaced meanwhile: the next read decides
                    return
                if snap.catalogue is not catalogue:  # changed while building: rows for new slots
                    for version_id in loaded:
                        loaded[version_id], models[version_id] = self._rebuilt(
                            loaded[version_id], models[version_id], snap.catalogue)
                self._arms.update(loaded)
                self.snapshot = dataclasses.replace(snap, arm_models={**snap.arm_models, **models})
            log.info("experiment %r: %d version(s) in memory besides the active one", experiment.name,
                     len(self.snapshot.arm_models))

    def _build_itemknn(self, experiment: Experiment) -> None:
        """Build the item-kNN neighbours of the training window (the active version's; without one,
        the latest ``RECSYS_TRAIN_WINDOW_DAYS`` of interactions) unless this window's are in memory."""
        active = versions.active_version(self.engine)
        if active is not None and active.data_start is not None and active.data_end is not None:
            start, end = active.data_start, active.data_end
        else:
            end = training_data.latest_day(self.engine)
            start = None if end is None else end - timedelta(days=self.settings.training.window_days - 1)
        built = self.snapshot.itemknn
        if built is not None and (built.start, built.end) == (start, end):
            return
        started = time.perf_counter()
        if end is None:  # no interactions at all: no neighbours, the popularity back-up fills the lists
            neighbours = ItemNeighbours.build(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                                              0, None, None)
        else:
            data = training_data.load_interactions(self.engine, start, end)
            neighbours = ItemNeighbours.build(data.player_idx, data.slot_idx, data.slot_keys, data.player_keys.size,
                                              start, end)
        with self._swap:
            if self.snapshot.experiment != experiment:  # stopped or replaced meanwhile
                return
            self.snapshot = dataclasses.replace(self.snapshot, itemknn=neighbours)
        log.info("experiment %r: item-kNN of %s..%s, %d slots, built in %.2f s", experiment.name, start, end,
                 neighbours.slot_keys.size, time.perf_counter() - started)

    def _load(self, version_id: int, catalogue: Catalogue) -> _Version:
        vectors = versions.load_slot_vectors(self.engine, version_id)
        try:
            weights = versions.load_weights(self.engine, version_id)
        except versions.VersionError:
            weights = None  # lists are ranked by similarity alone
        return _Version(vectors, weights, _new_slots(catalogue, vectors))

    def _build(self, loaded: _Version, catalogue: Catalogue) -> ServingModel:
        v = loaded.vectors
        return build_serving_model(
            v.version_id, v.slot_keys, v.similarity, v.towers, v.provisional, loaded.weights, catalogue,
            self.settings.serving.index_factory,
        )

    def _rebuilt_for(self, catalogue: Catalogue) -> ServingModel | None:
        """The current model, rebuilt when the catalogue's slots without a trained row changed."""
        loaded, model = self._version, self.snapshot.model
        if loaded is None or model is None or model.version_id != loaded.vectors.version_id:
            return model
        self._version, model = self._rebuilt(loaded, model, catalogue)
        return model

    def _rebuilt(self, loaded: _Version, model: ServingModel, catalogue: Catalogue) -> tuple[_Version, ServingModel]:
        """A version and its model, rebuilt when the catalogue's slots without a trained row changed."""
        new_slots = _new_slots(catalogue, loaded.vectors)
        if new_slots == loaded.new_slots:
            return loaded, model
        loaded = dataclasses.replace(loaded, new_slots=new_slots)
        return loaded, self._build(loaded, catalogue)

    # --- what requests ask -----------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        """(ready, why): the database answers, the active version's index is in memory and, while
        an experiment runs, every version its arms rank with. ``why`` says what is served meanwhile."""
        if not ping(self.engine):
            return False, "the database does not answer"
        snap = self.snapshot
        if not snap.catalogue_loaded:
            return False, "the catalogue is not loaded yet: no list is served"
        if not snap.experiment_read:
            return False, "the running experiment is not read yet: no list is served"
        why = f" ({self.last_error})" if self.last_error else ""
        if snap.model is None:
            if self._no_active:
                return False, "no active version: serving popularity lists (activate a version to serve the model's)"
            return False, f"the active version is loading: serving it through pgvector meanwhile{why}"
        if snap.needs_itemknn() and snap.itemknn is None:
            return False, (f"experiment {snap.experiment.name!r}: the item-kNN arm's neighbours are being built: "
                           f"its players get 503 meanwhile{why}")
        missing = snap.missing_versions()
        if missing:
            return False, (f"experiment {snap.experiment.name!r}: version(s) {', '.join(map(str, missing))} of its "
                           f"arms loading: serving them through pgvector meanwhile{why}")
        if snap.experiment is not None:
            return True, f"serving model version {snap.model.version_id}, experiment {snap.experiment.name!r}"
        return True, f"serving model version {snap.model.version_id}"


def _new_slots(catalogue: Catalogue, vectors: SlotVectors) -> tuple:
    """The catalogue's slots that the version has no row for, with the attributes their rows use."""
    keys = np.setdiff1d(catalogue.keys, vectors.slot_keys)
    return tuple(
        (s.key, s.provider, s.theme, s.volatility) for s in (catalogue.slots[int(k)] for k in keys.tolist())
    )
