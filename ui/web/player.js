// Sonic Catalog web UI: the one player with its queue, and navigation by link.
// Loaded once into the page's <head> (ui/web/assets.py). Plain browser JS, no library.
//
// - Any <a class="sonic-open" data-track=ID> opens that track: the URL becomes
//   /ui/?track=ID (pushState), so reload and Back keep the track.
// - <button class="sonic-play" data-track=ID> plays the track in the one player;
//   <button class="sonic-radio" data-track=ID> fills the queue from /playlists/radio
//   and the queue extends itself when two tracks are left.
// - Only one thing plays at a time: starting any <audio> pauses every other one.
(function () {
  if (window.sonic) return;
  const S = (window.sonic = { queue: [], pos: -1, radioSeed: null, extending: false,
                              pending: "", pendingList: "" });
  const $ = (id) => document.getElementById(id);
  const label = (t) => [t.artist, t.title].filter(Boolean).join(" - ") ||
    (t.path || "").split("/").pop() || "track " + t.id;

  function audio() { return $("sonic-audio"); }

  S.render = function () {
    const q = $("sonic-queue"), now = $("sonic-now");
    if (now) now.textContent = S.pos >= 0 ? S.queue[S.pos].title : "nothing playing";
    if (!q) return;
    q.innerHTML = "";
    S.queue.forEach((t, i) => {
      const li = document.createElement("li");
      li.textContent = t.title;
      li.dataset.track = t.id;
      if (i === S.pos) li.className = "current";
      li.addEventListener("click", () => S.playAt(i));
      q.appendChild(li);
    });
  };

  S.playAt = function (i) {
    const a = audio();
    if (!a || i < 0 || i >= S.queue.length) return;
    S.pos = i;
    a.src = "/tracks/" + S.queue[i].id + "/audio";
    a.dataset.track = S.queue[i].id;
    a.play().catch(() => {});
    S.render();
    S.extend();
  };

  S.play = function (id, title) {
    S.queue = [{ id: Number(id), title: title || "track " + id }];
    S.radioSeed = null;
    S.playAt(0);
  };

  async function radioTracks(seed) {
    const r = await fetch("/playlists/radio?seed=" + seed + "&n=20");
    if (!r.ok) throw new Error((await r.json()).detail || r.statusText);
    return (await r.json()).tracks.map((t) => ({ id: t.id, title: label(t) }));
  }

  S.radio = async function (id) {
    try {
      S.queue = await radioTracks(id);
    } catch (e) {
      const now = $("sonic-now");
      if (now) now.textContent = "radio: " + e.message;
      return;
    }
    S.radioSeed = Number(id);
    S.playAt(0);
  };

  // Near the end of a radio queue, seed more from its last track (new tracks only).
  S.extend = async function () {
    if (S.radioSeed === null || S.extending || S.queue.length - S.pos > 2) return;
    S.extending = true;
    try {
      const more = await radioTracks(S.queue[S.queue.length - 1].id);
      const have = new Set(S.queue.map((t) => t.id));
      more.forEach((t) => { if (!have.has(t.id)) { S.queue.push(t); have.add(t.id); } });
      S.render();
    } catch (e) { /* the queue plays on as it is */ } finally { S.extending = false; }
  };

  function clickHidden(id) {
    const b = document.querySelector("#" + id + " button, button#" + id);
    if (b) b.click();
  }

  // Open a track in the Track tab; push=false when the URL already says so (Back, load).
  S.open = function (id, push) {
    id = String(id);
    if (push !== false && new URLSearchParams(location.search).get("track") !== id) {
      history.pushState({ track: id }, "", "?track=" + id);
    }
    S.pending = id;
    clickHidden("nav-track");
  };
  S.remember = function (id) {
    if (id && new URLSearchParams(location.search).get("track") !== String(id)) {
      history.pushState({ track: String(id) }, "", "?track=" + id);
    }
  };
  S.filter = function (kind, value) {
    S.pendingList = JSON.stringify({ kind: kind, value: value });
    clickHidden("nav-list");
  };

  document.addEventListener("click", (ev) => {
    const open = ev.target.closest && ev.target.closest("a.sonic-open");
    if (open) { ev.preventDefault(); S.open(open.dataset.track); return; }
    const play = ev.target.closest && ev.target.closest("button.sonic-play");
    if (play) { ev.preventDefault(); S.play(play.dataset.track, play.dataset.title); return; }
    const radio = ev.target.closest && ev.target.closest("button.sonic-radio");
    if (radio) { ev.preventDefault(); S.radio(radio.dataset.track); return; }
    const filt = ev.target.closest && ev.target.closest("a.sonic-filter");
    if (filt) { ev.preventDefault(); S.filter(filt.dataset.kind, filt.dataset.value); }
  });

  // One thing at a time: a starting <audio> pauses all the others (stems, uploads).
  document.addEventListener("play", (ev) => {
    document.querySelectorAll("audio, video").forEach((m) => { if (m !== ev.target) m.pause(); });
  }, true);
  document.addEventListener("ended", (ev) => {
    if (ev.target === audio()) S.playAt(S.pos + 1);
  }, true);

  window.addEventListener("popstate", () => {
    const id = new URLSearchParams(location.search).get("track");
    if (id) S.open(id, false);
  });
})();
