{{ analytics_copy('trigger_audiences', where="trigger <> 'birthday_this_month'") }}
