// Draws every chart of the page from the specs embedded in it, with the Vega bundle loaded
// before (assets/vega.js). Marks each figure rendered or failed, and the page ready when all
// are done, so a headless browser can check the report.
(function () {
  "use strict";
  var specs = JSON.parse(document.getElementById("report-specs").textContent);
  var figures = document.querySelectorAll("figure.chart[data-chart]");
  var pending = [];
  figures.forEach(function (figure) {
    var id = figure.getAttribute("data-chart");
    var spec = specs[id];
    if (!spec) {
      figure.setAttribute("data-state", "missing");
      console.error("report: no chart specification for " + id);
      return;
    }
    var body = figure.querySelector(".chart-body");
    pending.push(
      vegaEmbed(body, spec, { renderer: "svg", actions: false })
        .then(function () {
          figure.setAttribute("data-state", "rendered");
        })
        .catch(function (error) {
          figure.setAttribute("data-state", "error");
          console.error("report: chart " + id + " failed: " + error);
        })
    );
  });
  Promise.all(pending).then(function () {
    document.documentElement.setAttribute("data-report", "ready");
  });
})();
