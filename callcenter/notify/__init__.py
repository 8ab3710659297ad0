"""SMS to reporters (短信通知) and the callback scheduler core.

`outbox` owns the `sms_outbox` table and the one way in (`enqueue_sms`, called inside the
case transaction); `templates` renders the city's zh-CN texts; `encoding` lays a text out
as SMS parts; `policy` holds the pure sending rules (backoff, quiet hours, rate limit);
`dispatcher` claims due messages and hands them to a driver (`log_driver`, `kannel`,
`smpp`); `callbacks` is the pure scheduler for outbound callback calls.
"""
