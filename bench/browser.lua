-- wrk script for the REST GET scenario with the headers a browser sends with an API call (fetch from a
-- page of the same site): each proxy reads and forwards them, so their cost shows here.
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
wrk.headers["Accept"] = "application/json, text/plain, */*"
wrk.headers["Accept-Language"] = "fr-FR,fr;q=0.9,en;q=0.8"
wrk.headers["Accept-Encoding"] = "gzip, deflate, br"
wrk.headers["Cookie"] = "session=abcdef0123456789abcdef"
wrk.headers["Referer"] = "http://app.test/projects"
wrk.headers["Origin"] = "http://app.test"
wrk.headers["Sec-Fetch-Mode"] = "cors"
wrk.headers["Sec-Fetch-Site"] = "same-origin"
wrk.headers["Connection"] = "keep-alive"
