// coachgraph's live session page: the session over HTTP (/graphql), its samples and status
// changes over the app's WebSocket (graphql-transport-ws), drawn with the vendored uPlot.
// After a dropped connection it subscribes again with `after:` the last cursor it drew, so no
// sample is missed or drawn twice. window.coachgraphLive exposes what was drawn (tests read it).
(function () {
  "use strict";
  var main = document.getElementById("live");
  var sessionId = main.getAttribute("data-session");
  var endpoint = new URL(main.getAttribute("data-endpoint"), window.location.href);
  var socketUrl = new URL(endpoint.href);
  socketUrl.protocol = endpoint.protocol === "https:" ? "wss:" : "ws:";
  var maxHeartRate = Number(main.getAttribute("data-max-heart-rate")) || 190;
  var MAX_POINTS = 50000; // oldest points leave the chart past this many
  var ZONES = [
    { name: "Z1", from: 0.5, color: "rgba(120, 170, 255, 0.14)" },
    { name: "Z2", from: 0.6, color: "rgba(90, 200, 120, 0.14)" },
    { name: "Z3", from: 0.7, color: "rgba(250, 210, 60, 0.16)" },
    { name: "Z4", from: 0.8, color: "rgba(255, 150, 50, 0.16)" },
    { name: "Z5", from: 0.9, color: "rgba(240, 70, 60, 0.16)" },
  ];

  var state = {
    status: null,
    lastCursor: main.getAttribute("data-start-cursor"), // c:0: every stored sample, then live
    lastSeq: 0,
    seqs: [], // cursors drawn, in the order received
    received: 0,
    latest: { HEART_RATE: null, POWER: null },
    connects: 0,
    ended: false,
    error: null,
  };
  window.coachgraphLive = state;

  function $(id) {
    return document.getElementById(id);
  }
  function show(id, text) {
    $(id).textContent = text;
  }
  function problem(text) {
    state.error = text;
    var p = $("problem");
    p.textContent = text;
    p.hidden = !text;
  }

  // the token: from the fragment (#token=...), kept for this tab only, then out of the URL
  function token() {
    var hash = new URLSearchParams(window.location.hash.slice(1));
    var fromHash = hash.get("token");
    if (fromHash) {
      sessionStorage.setItem("coachgraph.token", fromHash);
      history.replaceState(null, "", window.location.pathname + window.location.search);
      return fromHash;
    }
    return sessionStorage.getItem("coachgraph.token");
  }

  function seqOf(cursor) {
    var text = atob(cursor.replace(/-/g, "+").replace(/_/g, "/") + "==".slice(0, (4 - (cursor.length % 4)) % 4));
    return Number(text.split(":")[1]);
  }

  // --- the chart: aligned columns [time s, heart rate, power], kept in time order
  var xs = [];
  var hr = [];
  var power = [];
  var chart = null;
  var drawPending = false;

  function zoneOf(value) {
    var found = null;
    ZONES.forEach(function (zone) {
      if (value >= zone.from * maxHeartRate) found = zone;
    });
    return found;
  }

  function drawZones(u) {
    var ctx = u.ctx;
    var left = u.bbox.left;
    var width = u.bbox.width;
    ctx.save();
    ZONES.forEach(function (zone, i) {
      var low = zone.from * maxHeartRate;
      var high = i + 1 < ZONES.length ? ZONES[i + 1].from * maxHeartRate : maxHeartRate * 1.2;
      var top = u.valToPos(high, "bpm", true);
      var bottom = u.valToPos(low, "bpm", true);
      ctx.fillStyle = zone.color;
      ctx.fillRect(left, top, width, bottom - top);
    });
    ctx.restore();
  }

  function makeChart() {
    var box = $("chart");
    var options = {
      width: Math.max(320, box.clientWidth || 800),
      height: 320,
      scales: {
        x: { time: true },
        bpm: { range: [Math.round(maxHeartRate * 0.4), Math.round(maxHeartRate * 1.05)] },
        W: { auto: true },
      },
      axes: [
        {},
        { scale: "bpm", label: "bpm" },
        { scale: "W", side: 1, label: "W", grid: { show: false } },
      ],
      series: [
        {},
        { label: "Heart rate", scale: "bpm", stroke: "#d6336c", width: 2, spanGaps: true },
        { label: "Power", scale: "W", stroke: "#1c7ed6", width: 1.5, spanGaps: true, show: false },
      ],
      hooks: { drawClear: [drawZones] },
    };
    chart = new uPlot(options, [xs, hr, power], box);
    window.addEventListener("resize", function () {
      chart.setSize({ width: Math.max(320, box.clientWidth), height: 320 });
    });
  }

  function indexFor(t) {
    // samples mostly arrive in time order: look from the end
    var i = xs.length;
    while (i > 0 && xs[i - 1] > t) i--;
    return i;
  }

  function place(kind, t, value) {
    var i = indexFor(t);
    var column = kind === "POWER" ? power : hr;
    if (i > 0 && xs[i - 1] === t) {
      column[i - 1] = value;
      return;
    }
    xs.splice(i, 0, t);
    hr.splice(i, 0, kind === "HEART_RATE" ? value : null);
    power.splice(i, 0, kind === "POWER" ? value : null);
    if (xs.length > MAX_POINTS) {
      xs.shift();
      hr.shift();
      power.shift();
    }
  }

  function scheduleDraw() {
    if (drawPending) return;
    drawPending = true;
    window.requestAnimationFrame(function () {
      drawPending = false;
      if (chart) chart.setData([xs, hr, power]);
    });
  }

  function sample(s) {
    var seq = seqOf(s.cursor);
    if (seq <= state.lastSeq) return; // already drawn (a resubscription's overlap)
    state.lastSeq = seq;
    state.lastCursor = s.cursor;
    state.seqs.push(seq);
    state.received += 1;
    place(s.kind, Date.parse(s.at) / 1000, s.value);
    state.latest[s.kind] = s.value;
    if (s.kind === "HEART_RATE") {
      show("hr", String(Math.round(s.value)));
      var zone = zoneOf(s.value);
      show("zone", zone ? zone.name : "below Z1");
      $("zone").className = "zone " + (zone ? zone.name.toLowerCase() : "z0");
    } else if (s.kind === "POWER") {
      show("power", String(Math.round(s.value)));
      if ($("power-reading").hidden) {
        $("power-reading").hidden = false;
        chart.setSeries(2, { show: true });
      }
    }
    main.setAttribute("data-last-cursor", s.cursor);
    main.setAttribute("data-received", String(state.received));
    scheduleDraw();
  }

  function setStatus(status) {
    state.status = status;
    show("status", status);
    $("status").className = "status " + status.toLowerCase();
    main.setAttribute("data-status", status);
  }

  function setConnection(text) {
    show("connection", text);
    main.setAttribute("data-connection", text);
  }

  // --- HTTP: the session itself
  var SESSION = [
    "query LiveSession($id: ID!) { node(id: $id) { __typename",
    "  ... on TrainingSession { status startedAt endedAt athlete { name } coach { name } } } }",
  ].join("\n");

  function load(auth) {
    return fetch(endpoint.href, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: auth },
      body: JSON.stringify({ query: SESSION, variables: { id: sessionId } }),
    })
      .then(function (response) {
        return response.json();
      })
      .then(function (body) {
        if (body.errors && body.errors.length) throw new Error(body.errors[0].message);
        var node = body.data && body.data.node;
        if (!node || node.__typename !== "TrainingSession") throw new Error("No such training session");
        show("who", node.athlete.name + " with " + node.coach.name);
        setStatus(node.status);
        return node;
      });
  }

  // --- the WebSocket: graphql-transport-ws, resumed after the last cursor drawn
  var METRICS = [
    "subscription Samples($id: ID!, $after: String) {",
    "  sessionMetrics(sessionId: $id, kinds: [HEART_RATE, POWER], after: $after) { cursor kind at value } }",
  ].join("\n");
  var UPDATES = "subscription Status($id: ID!) { sessionUpdates(sessionId: $id) { status } }";
  var retryMs = 250;

  function connect(auth) {
    state.connects += 1;
    setConnection(state.connects > 1 ? "reconnecting" : "connecting");
    var socket = new WebSocket(socketUrl.href, "graphql-transport-ws");
    var acked = false;
    socket.onopen = function () {
      socket.send(JSON.stringify({ type: "connection_init", payload: { authorization: auth } }));
    };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "connection_ack") {
        acked = true;
        retryMs = 250;
        setConnection("live");
        socket.send(JSON.stringify({
          id: "samples",
          type: "subscribe",
          payload: { query: METRICS, variables: { id: sessionId, after: state.lastCursor } },
        }));
        socket.send(JSON.stringify({
          id: "status",
          type: "subscribe",
          payload: { query: UPDATES, variables: { id: sessionId } },
        }));
        // what changed while the socket was down
        if (state.connects > 1) load(auth).catch(function (err) { problem(String(err.message || err)); });
      } else if (message.type === "ping") {
        socket.send(JSON.stringify({ type: "pong" }));
      } else if (message.type === "next") {
        var payload = message.payload || {};
        if (payload.errors && payload.errors.length) {
          problem(payload.errors[0].message);
        } else if (message.id === "samples" && payload.data) {
          sample(payload.data.sessionMetrics);
        } else if (message.id === "status" && payload.data) {
          setStatus(payload.data.sessionUpdates.status);
        }
      } else if (message.type === "error") {
        problem((message.payload && message.payload[0] && message.payload[0].message) || "subscription refused");
        state.ended = true; // a refusal is not retried
        socket.close(1000);
      } else if (message.type === "complete" && message.id === "samples") {
        // the session ended: every sample is drawn
        state.ended = true;
        setConnection("ended");
        socket.close(1000);
        load(auth).catch(function (err) { problem(String(err.message || err)); });
      }
    };
    socket.onclose = function (event) {
      if (state.ended) return;
      if (event.code === 4401 || event.code === 4403 || event.code === 4400) {
        problem(event.code === 4401 ? "The token has expired: open the page with a new one"
          : "The server refused the subscription (" + event.code + ")");
        setConnection("refused");
        return;
      }
      setConnection("offline");
      var wait = retryMs;
      retryMs = Math.min(retryMs * 2, 5000);
      window.setTimeout(function () { connect(auth); }, acked ? 0 : wait);
    };
  }

  function drawZoneLegend() {
    var list = $("zones");
    ZONES.forEach(function (zone, i) {
      var item = document.createElement("li");
      var low = Math.round(zone.from * maxHeartRate);
      var high = i + 1 < ZONES.length ? Math.round(ZONES[i + 1].from * maxHeartRate) - 1 : maxHeartRate;
      item.textContent = zone.name + " " + low + "–" + high + " bpm";
      item.style.background = zone.color;
      list.appendChild(item);
    });
  }

  function start(jwt) {
    var auth = /^Bearer /i.test(jwt) ? jwt : "Bearer " + jwt;
    problem("");
    load(auth)
      .then(function (node) {
        if (node.status === "SCHEDULED" || node.status === "CANCELLED") {
          problem("The session is " + node.status + ": no samples yet");
        }
        connect(auth);
      })
      .catch(function (err) {
        problem(String(err.message || err));
        $("login").hidden = false;
      });
  }

  drawZoneLegend();
  makeChart();
  $("login").addEventListener("submit", function (event) {
    event.preventDefault();
    var value = $("token").value.trim();
    if (!value) return;
    sessionStorage.setItem("coachgraph.token", value);
    $("login").hidden = true;
    start(value);
  });
  var jwt = token();
  if (jwt) start(jwt);
  else {
    $("login").hidden = false;
    problem("Open this page with #token=<your token>, or paste a token");
  }
})();
