document.querySelector("#app p").textContent = "Ready.";
