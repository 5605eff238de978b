-- wrk script for the REST POST scenario: a small JSON body, as a create call sends.
wrk.method = "POST"
wrk.body = '{"name":"bench","description":"created by wrk"}'
wrk.headers["Content-Type"] = "application/json"
