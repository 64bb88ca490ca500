/* Marketing Hub — charts.js. Draws every [data-chart] element with Plotly.
 *
 * Markup (templates/includes/chart.html):
 *   <div class="chart" data-chart="ID" data-plotly-src="/static/vendor/plotly-finance-….min.js" style="height:320px"></div>
 *   <script id="ID" type="application/json">{"data": [...], "layout": {...}, "config": {...}}</script>
 * The figure's layout is merged over a common clean layout (transparent background, system font,
 * small margins, indigo colourway). If layout.meta.links is a list of URLs (one per point index,
 * or one list per trace) a click on a point opens the URL — charts link to the list behind them.
 * Runs for the page and for every htmx swap (htmx.onLoad). Plotly (1.3 MB) is loaded lazily from
 * data-plotly-src: only once a chart comes within 200 px of the screen (IntersectionObserver) and
 * never before the page's load event, so the page is usable first and pages whose charts stay off
 * screen (or hidden) never fetch or parse it. A chart is drawn when it first becomes visible.
 */
(function () {
  "use strict";

  var FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';
  var COLORWAY = ["#4f46e5", "#0ea5e9", "#10b981", "#f59e0b", "#e11d48", "#8b5cf6", "#14b8a6", "#f97316", "#64748b"];
  var GRID = "#eef0f5";
  var AXIS_LINE = "#e3e6ee";
  var TICK = "#64748b";

  function isPlainObject(v) { return v !== null && typeof v === "object" && !Array.isArray(v); }

  function merge(base, over) {
    var out = {};
    var k;
    for (k in base) if (Object.prototype.hasOwnProperty.call(base, k)) out[k] = base[k];
    for (k in over) {
      if (!Object.prototype.hasOwnProperty.call(over, k)) continue;
      out[k] = isPlainObject(out[k]) && isPlainObject(over[k]) ? merge(out[k], over[k]) : over[k];
    }
    return out;
  }

  function axisDefaults() {
    return {
      gridcolor: GRID, linecolor: AXIS_LINE, zerolinecolor: AXIS_LINE, showline: false,
      tickfont: { color: TICK, size: 11 }, title: { font: { color: TICK, size: 12 } },
      automargin: true, ticks: "", fixedrange: true
    };
  }

  function baseLayout(figLayout) {
    var layout = {
      autosize: true,
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { family: FONT, size: 12, color: "#334155" },
      colorway: COLORWAY,
      margin: { l: 8, r: 8, t: figLayout && figLayout.title ? 40 : 8, b: 8, pad: 4 },
      hovermode: "closest",
      // Numbers as the page's language writes them: 1 234,5 in Polish, 1,234.5 in English.
      separators: (document.documentElement.lang || "en").slice(0, 2) === "pl" ? ",\u00a0" : ".,",
      hoverlabel: { bgcolor: "#0f172a", bordercolor: "#0f172a", font: { family: FONT, color: "#ffffff", size: 12 } },
      legend: { orientation: "h", x: 0, xanchor: "left", y: 1.02, yanchor: "bottom", font: { size: 12, color: "#475569" }, bgcolor: "rgba(0,0,0,0)" },
      title: { font: { size: 14, color: "#0f172a" }, x: 0, xanchor: "left", pad: { l: 4 } },
      bargap: 0.35,
      xaxis: axisDefaults(),
      yaxis: axisDefaults()
    };
    // Extra axes (xaxis2, yaxis3 …) get the same look.
    Object.keys(figLayout || {}).forEach(function (key) {
      if (/^[xy]axis\d+$/.test(key)) layout[key] = axisDefaults();
    });
    return layout;
  }

  // Dates on the axes and in hover labels as Polish writes them ("sty 2026", "15.01.2026"): Plotly's
  // locale format, registered once when the page is in Polish.
  var POLISH = {
    moduleType: "locale", name: "pl", dictionary: {},
    format: {
      days: ["niedziela", "poniedziałek", "wtorek", "środa", "czwartek", "piątek", "sobota"],
      shortDays: ["niedz.", "pon.", "wt.", "śr.", "czw.", "pt.", "sob."],
      months: ["styczeń", "luty", "marzec", "kwiecień", "maj", "czerwiec", "lipiec", "sierpień", "wrzesień",
               "październik", "listopad", "grudzień"],
      shortMonths: ["sty", "lut", "mar", "kwi", "maj", "cze", "lip", "sie", "wrz", "paź", "lis", "gru"],
      date: "%d.%m.%Y", decimal: ",", thousands: "\u00a0"
    }
  };
  var polishRegistered = false;

  function pageLocale() {
    if ((document.documentElement.lang || "en").slice(0, 2) !== "pl") return "en";
    if (!polishRegistered) {
      window.Plotly.register(POLISH);
      polishRegistered = true;
    }
    return "pl";
  }

  var CONFIG = {
    responsive: true,
    displaylogo: false,
    displayModeBar: false, // clean dashboards; a figure may turn it on with "config"
    modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines", "hoverClosestCartesian", "hoverCompareCartesian"],
    toImageButtonOptions: { format: "png", scale: 2 }
  };

  function sameOrigin(url) {
    try { return new URL(url, window.location.href).origin === window.location.origin; }
    catch (e) { return false; }
  }

  function linkFor(links, point) {
    var index = point.pointIndex !== undefined ? point.pointIndex : point.pointNumber;
    if (Array.isArray(index)) index = index[0];
    var perTrace = links[point.curveNumber];
    if (Array.isArray(perTrace)) return perTrace[index];
    return links[index];
  }

  function readFigure(el) {
    var id = el.getAttribute("data-chart");
    var script = id && document.getElementById(id);
    if (!script) return null;
    try { return JSON.parse(script.textContent); }
    catch (e) {
      if (window.console) console.warn("charts.js: bad JSON for chart", id, e);
      return null;
    }
  }

  function draw(el) {
    if (el._mhChartDrawn) return;
    var fig = readFigure(el);
    if (!fig) {
      var message = document.createElement("div");
      message.className = "chart-error";
      message.textContent = window.MH && window.MH.t ? window.MH.t("chart_error", "Chart data could not be read.") : "Chart data could not be read.";
      el.replaceChildren(message);
      el._mhChartDrawn = true;
      return;
    }
    el._mhChartDrawn = true;
    var figLayout = fig.layout || {};
    var layout = merge(baseLayout(figLayout), figLayout);
    var config = merge(merge(CONFIG, { locale: pageLocale() }), fig.config || {});
    var links = figLayout.meta && Array.isArray(figLayout.meta.links) ? figLayout.meta.links : null;

    window.Plotly.newPlot(el, fig.data || [], layout, config).then(function () {
      if (!links) return;
      el.classList.add("chart-linked");
      el.on("plotly_hover", function (ev) {
        var p = ev && ev.points && ev.points[0];
        el.classList.toggle("is-point-hover", !!(p && linkFor(links, p)));
      });
      el.on("plotly_unhover", function () { el.classList.remove("is-point-hover"); });
      el.on("plotly_click", function (ev) {
        var p = ev && ev.points && ev.points[0];
        var url = p && linkFor(links, p);
        if (url && sameOrigin(url)) window.location.assign(url);
      });
    });
  }

  var loading = false;
  var visible = []; // charts on screen, waiting for Plotly

  function drawVisible() {
    var waiting = visible;
    visible = [];
    waiting.forEach(function (el) { if (document.body.contains(el)) draw(el); });
  }

  function loadPlotly(src) {
    if (!src || loading) return; // when it arrives, every chart that became visible is drawn
    loading = true;
    var s = document.createElement("script");
    s.src = src;
    s.onload = function () { loading = false; drawVisible(); };
    s.onerror = function () { loading = false; };
    document.head.appendChild(s);
  }

  function onScreen(el) {
    if (el._mhChartDrawn) return;
    if (window.Plotly) { draw(el); return; }
    visible.push(el);
    var src = el.getAttribute("data-plotly-src");
    // After the load event: the page's own content and scripts come first.
    if (document.readyState === "complete") loadPlotly(src);
    else window.addEventListener("load", function () { loadPlotly(src); }, { once: true });
  }

  var observer = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (entry) {
      if (!entry.isIntersecting) return;
      observer.unobserve(entry.target);
      onScreen(entry.target);
    });
  }, { rootMargin: "200px" }) : null;

  function drawIn(root) {
    if (!root || !root.querySelectorAll) return;
    var charts = Array.prototype.slice.call(root.querySelectorAll("[data-chart]"));
    if (root.hasAttribute && root.hasAttribute("data-chart")) charts.unshift(root);
    charts.forEach(function (el) {
      if (el._mhChartDrawn || el._mhChartWatched) return;
      el._mhChartWatched = true;
      if (observer) observer.observe(el);
      else onScreen(el);
    });
  }

  // Free Plotly's listeners when htmx removes a chart.
  document.addEventListener("htmx:beforeCleanupElement", function (evt) {
    var el = evt.detail && evt.detail.elt;
    if (el && el._mhChartWatched && observer) observer.unobserve(el);
    if (el && el._mhChartDrawn && window.Plotly && el.classList && el.classList.contains("js-plotly-plot")) {
      window.Plotly.purge(el);
    }
  });

  window.MHCharts = { draw: drawIn };

  if (window.htmx && typeof window.htmx.onLoad === "function") {
    window.htmx.onLoad(drawIn);
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { drawIn(document.body); });
  } else {
    drawIn(document.body);
  }
})();
