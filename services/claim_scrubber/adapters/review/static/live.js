// Live updates: when the server says the queue changed, fetch the worklist fragment again.
// Connected once the document (and htmx, whose handler was registered first) is ready, from
// the version the page was rendered at: a change in between is not missed.
document.addEventListener("DOMContentLoaded", function () {
  var worklist = document.getElementById("worklist");
  if (!worklist || !window.EventSource || !window.htmx) { return; }
  var events = new EventSource("/events?since=" + worklist.getAttribute("data-version"));
  events.addEventListener("changed", function () {
    htmx.ajax("GET", worklist.getAttribute("data-source"), {target: "#worklist", swap: "innerHTML"});
  });
});
