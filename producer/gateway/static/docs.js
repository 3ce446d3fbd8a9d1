// Renders /openapi.json with Swagger UI. A file of its own, not an inline script, so the
// page's content security policy can allow scripts from this origin only.
"use strict";

window.ui = SwaggerUIBundle({
  url: new URL("openapi.json", document.baseURI).href,
  dom_id: "#swagger-ui",
  deepLinking: true,
  // The default sends the document to an online validator; nothing leaves this gateway.
  validatorUrl: null,
  // "Try it out" calls this gateway; the key or token given under "Authorize" stays in the page.
  persistAuthorization: false,
});
