// Applies the chosen theme before the page paints (light, dark, or the system's when unset).
(function () {
  var chosen = null;
  try { chosen = localStorage.getItem("puras-theme"); } catch (e) { /* storage blocked */ }
  var dark = chosen ? chosen === "dark" : window.matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.dataset.theme = dark ? "dark" : "light";
})();
