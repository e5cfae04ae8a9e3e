// Live updates: one EventSource per page. Any element with data-live-refresh="<url>" and
// data-live-on="<kinds>" is re-fetched (htmx, outerHTML) when a matching message arrives:
// "prediction" for new predictions, an event type prefix such as "order." for outbox events.
// data-live-asset="<id>" narrows a panel to one asset's predictions.
(function () {
  "use strict";
  const status = document.getElementById("live-status");
  if (!status) return; // not signed in
  const feed = document.getElementById("live-feed");
  const pending = new Map();
  const state = (window.fleetcareLive = { messages: 0, refreshes: 0 });

  function matches(el, kind, detail) {
    const kinds = (el.dataset.liveOn || "").split(/\s+/).filter(Boolean);
    if (!kinds.some((k) => kind === k || (k.endsWith(".") && kind.startsWith(k)))) return false;
    if (el.dataset.liveAsset && detail && detail.asset_id !== undefined) {
      return String(detail.asset_id) === el.dataset.liveAsset;
    }
    return true;
  }

  function refresh(kind, detail) {
    document.querySelectorAll("[data-live-refresh]").forEach((el) => {
      if (kind !== "*" && !matches(el, kind, detail)) return;
      const id = el.id;
      clearTimeout(pending.get(id));
      // a burst of messages (a scoring run) becomes one refresh
      pending.set(
        id,
        setTimeout(() => {
          const current = document.getElementById(id);
          if (!current || !window.htmx) return;
          htmx
            .ajax("GET", current.dataset.liveRefresh, { target: "#" + id, swap: "outerHTML" })
            .then(() => {
              state.refreshes += 1;
            });
        }, 250)
      );
    });
  }

  function addToFeed(text, href) {
    if (!feed) return;
    const empty = document.getElementById("live-empty");
    if (empty) empty.remove();
    const li = document.createElement("li");
    const time = document.createElement("time");
    time.textContent = new Date().toLocaleTimeString();
    li.appendChild(time);
    const body = href ? document.createElement("a") : document.createElement("span");
    if (href) body.href = href;
    body.textContent = text;
    li.appendChild(body);
    feed.prepend(li);
    while (feed.children.length > 30) feed.lastElementChild.remove();
  }

  function fmt(x) {
    return Math.round(x).toLocaleString();
  }

  const source = new EventSource("/dashboard/live");
  source.addEventListener("ready", () => {
    status.dataset.state = "open";
  });
  source.addEventListener("prediction", (e) => {
    const d = JSON.parse(e.data);
    state.messages += 1;
    const due = d.due_at_conservative ? " · due " + d.due_at_conservative.slice(0, 10) : "";
    addToFeed(
      `${d.ref} ${d.component}: RUL ${fmt(d.rul)} [${fmt(d.rul_low)}–${fmt(d.rul_high)}]${due}`,
      "/dashboard/assets/" + d.asset_id
    );
    refresh("prediction", d);
  });
  source.addEventListener("event", (e) => {
    const d = JSON.parse(e.data);
    state.messages += 1;
    addToFeed(`${d.type} ${d.subject}`, null);
    refresh(d.type, d);
  });
  source.addEventListener("resync", (e) => {
    const d = JSON.parse(e.data);
    state.messages += 1;
    addToFeed(
      d.dropped ? `${d.dropped.toLocaleString()} updates at once — panels reloaded` : "reconnected — panels reloaded",
      null
    );
    refresh("*", null);
  });
  source.onerror = () => {
    // EventSource reconnects by itself; show it meanwhile
    status.dataset.state = source.readyState === EventSource.CLOSED ? "closed" : "connecting";
  };
})();
