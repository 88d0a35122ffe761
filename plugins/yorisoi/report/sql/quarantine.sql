-- Files the loaders did not load (quarantined, rejected), newest first.
select
    source,
    feed,
    file_name,
    status,
    reason,
    recorded_at
from raw._files
where status <> 'loaded'
order by recorded_at desc
limit 50
