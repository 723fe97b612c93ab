// response_mode=form_post (OIDC.md): send the answer to the application at once. Without
// JavaScript the page's button does it.
(function () {
  "use strict";
  const form = document.getElementById("form-post");
  if (form) form.submit();
})();
